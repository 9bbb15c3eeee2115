"""Nodes and accounting: the instance id holding an agent id, and indexes for the
usage and event-log queries (time ranges over sessions and transitions).

Revision ID: 0006_nodes_accounting
Revises: 0005_groups_policies
Create Date: 2026-11-24
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_nodes_accounting"
down_revision = "0005_groups_policies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("instance_id", sa.String(64), nullable=False,
                                      server_default=""))
    op.create_index("ix_kernel_events_at", "kernel_events", ["at", "id"])
    op.create_index("ix_kernels_access_key_created", "kernels", ["access_key", "created_at"])
    op.create_index("ix_kernels_created", "kernels", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_kernels_created", "kernels")
    op.drop_index("ix_kernels_access_key_created", "kernels")
    op.drop_index("ix_kernel_events_at", "kernel_events")
    op.drop_column("agents", "instance_id")
