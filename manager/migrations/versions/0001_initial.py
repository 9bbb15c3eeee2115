"""Initial schema: keypairs, agents, images, kernels, kernel_events.

Revision ID: 0001
Revises:
Create Date: 2024-01-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LIVE = ("'PENDING', 'PREPARING', 'RESTARTING', 'RUNNING', 'SCHEDULED', 'TERMINATING'")
NOW = sa.text("now()")


def _ts(name: str, nullable: bool = False, default: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable,
                     server_default=NOW if default else None)


def upgrade() -> None:
    op.create_table(
        "keypairs",
        sa.Column("access_key", sa.String(64), primary_key=True),
        sa.Column("secret_key", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("concurrency_limit", sa.Integer, nullable=False, server_default="5"),
        sa.Column("num_queries", sa.BigInteger, nullable=False, server_default="0"),
        _ts("created_at"),
        _ts("last_used", nullable=True, default=False),
    )
    op.create_table(
        "agents",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("region", sa.String(64), nullable=False, server_default=""),
        sa.Column("addr", sa.String(256), nullable=False, server_default=""),
        sa.Column("version", sa.String(64), nullable=False, server_default=""),
        sa.Column("available_slots", JSONB, nullable=False, server_default="{}"),
        sa.Column("occupied_slots", JSONB, nullable=False, server_default="{}"),
        _ts("first_contact"),
        _ts("last_heartbeat"),
        _ts("lost_at", nullable=True, default=False),
    )
    op.create_table(
        "images",
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("agent_id", sa.String(128),
                  sa.ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("image_id", sa.String(256), nullable=False, server_default=""),
        sa.Column("labels", JSONB, nullable=False, server_default="{}"),
        sa.UniqueConstraint("name", "agent_id", name="uq_images_name_agent"),
    )
    _create_kernels()
    op.create_table(
        "kernel_events",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("kernel_id", UUID(as_uuid=True),
                  sa.ForeignKey("kernels.id", ondelete="CASCADE"), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(256), nullable=True),
        _ts("at"),
    )
    op.create_index("ix_kernel_events_kernel_id", "kernel_events", ["kernel_id"])


def _create_kernels() -> None:
    op.create_table(
        "kernels",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("session_name", sa.String(64), nullable=False),
        sa.Column("access_key", sa.String(64),
                  sa.ForeignKey("keypairs.access_key"), nullable=False),
        sa.Column("lang", sa.String(256), nullable=False),
        sa.Column("image", sa.String(256), nullable=False, server_default=""),
        sa.Column("tag", sa.String(256), nullable=True),
        sa.Column("agent_id", sa.String(128), nullable=True),
        sa.Column("container_id", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_info", sa.String(256), nullable=True),
        _ts("status_changed"),
        sa.Column("slots", JSONB, nullable=False, server_default="{}"),
        sa.Column("environ", JSONB, nullable=False, server_default="{}"),
        _ts("created_at"),
        _ts("terminated_at", nullable=True, default=False),
        sa.Column("num_queries", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_stat", JSONB, nullable=True),
    )
    op.create_index("ix_kernels_live_token", "kernels", ["access_key", "session_name"],
                    unique=True, postgresql_where=sa.text(f"status IN ({LIVE})"))
    op.create_index("ix_kernels_agent_status", "kernels", ["agent_id", "status"])


def downgrade() -> None:
    op.drop_table("kernel_events")
    op.drop_table("kernels")
    op.drop_table("images")
    op.drop_table("agents")
    op.drop_table("keypairs")
