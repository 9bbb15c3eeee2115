"""Virtual folder invitations (seed 004 §2.15.10–§2.15.13).

An owner invites a user id with a permission; the invitee accepts (a row in
``vfolder_permissions`` appears) or rejects. At most one *pending* invitation per
(folder, invitee).

Revision ID: 0003
Revises: 0002
Create Date: 2024-02-02
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vfolder_invitations",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("vfolder_id", UUID(as_uuid=True),
                  sa.ForeignKey("vfolders.id", ondelete="CASCADE"), nullable=False),
        sa.Column("inviter", sa.String(64),
                  sa.ForeignKey("keypairs.access_key", ondelete="CASCADE"), nullable=False),
        sa.Column("invitee", sa.String(256), nullable=False),
        sa.Column("permission", sa.String(2), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.text("now()")),
        sa.CheckConstraint("permission IN ('ro', 'rw', 'rd')",
                           name="ck_vfolder_invitation_permission"),
        sa.CheckConstraint("state IN ('pending', 'accepted', 'rejected')",
                           name="ck_vfolder_invitation_state"),
    )
    op.create_index("ix_vfolder_invitations_pending", "vfolder_invitations",
                    ["vfolder_id", "invitee"], unique=True,
                    postgresql_where=sa.text("state = 'pending'"))
    op.create_index("ix_vfolder_invitations_invitee", "vfolder_invitations", ["invitee"])


def downgrade() -> None:
    op.drop_table("vfolder_invitations")
