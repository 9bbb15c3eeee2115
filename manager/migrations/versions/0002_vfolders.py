"""Virtual folders, their sharing permissions, and per-keypair API policy.

``vfolders`` / ``vfolder_permissions`` hold the folders the admin GraphQL API lists
(the vfolder REST API fills them); ``keypair_policies`` keeps the ``rate_limit`` and
``resource_policy`` an administrator sets through ``create_keypair`` / ``modify_keypair``.

Revision ID: 0002
Revises: 0001
Create Date: 2024-02-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOW = sa.text("now()")


def _key_fk(name: str = "access_key", primary_key: bool = False) -> sa.Column:
    return sa.Column(name, sa.String(64),
                     sa.ForeignKey("keypairs.access_key", ondelete="CASCADE"),
                     primary_key=primary_key, nullable=False)


def upgrade() -> None:
    op.create_table(
        "vfolders",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        _key_fk("owner"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.Column("last_used", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_files", sa.Integer, nullable=False, server_default="1000"),
        sa.Column("max_size", sa.BigInteger, nullable=False, server_default="1024"),
        sa.Column("num_files", sa.Integer, nullable=False, server_default="0"),
        sa.Column("cur_size", sa.BigInteger, nullable=False, server_default="0"),
        sa.UniqueConstraint("owner", "name", name="uq_vfolders_owner_name"),
    )
    op.create_table(
        "vfolder_permissions",
        sa.Column("vfolder_id", UUID(as_uuid=True),
                  sa.ForeignKey("vfolders.id", ondelete="CASCADE"), primary_key=True),
        _key_fk(primary_key=True),
        sa.Column("permission", sa.String(2), nullable=False),
        sa.CheckConstraint("permission IN ('ro', 'rw', 'rd')", name="ck_vfolder_permission"),
    )
    op.create_index("ix_vfolder_permissions_access_key", "vfolder_permissions",
                    ["access_key"])
    op.create_table(
        "keypair_policies",
        _key_fk(primary_key=True),
        sa.Column("rate_limit", sa.Integer, nullable=True),
        sa.Column("resource_policy", sa.String(256), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("keypair_policies")
    op.drop_table("vfolder_permissions")
    op.drop_table("vfolders")
