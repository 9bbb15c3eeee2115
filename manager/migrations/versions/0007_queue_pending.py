"""The PENDING queue: when a session entered it, its order and deadline (its agent group
is ``kernels.scaling_group`` from 0005), and the mounts its create asked for (the
replica that places it may not be the one that took the create).

Revision ID: 0007_queue
Revises: 0006_nodes_accounting
Create Date: 2026-11-24
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007_queue"
down_revision = "0006_nodes_accounting"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("kernels", sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("kernels", sa.Column("queue_seq", sa.BigInteger, nullable=True))
    op.add_column("kernels", sa.Column("queue_priority", sa.Integer, nullable=False,
                                       server_default="0"))
    op.add_column("kernels", sa.Column("queue_deadline", sa.DateTime(timezone=True),
                                       nullable=True))
    op.add_column("kernels", sa.Column("mounts", JSONB, nullable=False, server_default="[]"))
    op.execute("CREATE SEQUENCE kernels_queue_seq")
    op.create_index("ix_kernels_queued", "kernels", ["scaling_group", "queue_seq"],
                    postgresql_where=sa.text("status = 'PENDING' AND queued_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_kernels_queued", "kernels")
    op.execute("DROP SEQUENCE kernels_queue_seq")
    for column in ("mounts", "queue_deadline", "queue_priority",
                   "queue_seq", "queued_at"):
        op.drop_column("kernels", column)
