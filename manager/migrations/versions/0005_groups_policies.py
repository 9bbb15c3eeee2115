"""Agent groups, resource presets and keypair resource policies (issue 10).

``agent_groups`` (Backend.AI's scaling groups) each hold agents (``agents.scaling_group``,
sent by the agent at join) and carry the queue's scheduler policy (``fifo`` | ``drf``).
``resource_presets`` are named slot maps a create may name (``config.resourcePreset``).
``keypair_resource_policies`` hold the limits enforced at admission; the string
``keypair_policies.resource_policy`` becomes a reference to one (NULL means
``default``). Every name already stored there becomes a policy with the default's
(unlimited) values, so nothing that worked before is refused after the upgrade.
``kernels.scaling_group`` records the group a session was created for.

Revision ID: 0005_groups_policies
Revises: 0004
Create Date: 2026-11-24
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005_groups_policies"
down_revision = "0004"
branch_labels = None
depends_on = None

NOW = sa.text("now()")
PRESETS = {  # seed 003's SDA models: micro, small, large, xlarge
    "micro": {"cpu": "0.25", "mem": str(256 * 2**20)},
    "small": {"cpu": "1", "mem": str(1 * 2**30)},
    "large": {"cpu": "4", "mem": str(8 * 2**30)},
    "xlarge": {"cpu": "8", "mem": str(32 * 2**30)},
}


def upgrade() -> None:
    groups = op.create_table(
        "agent_groups",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("description", sa.String(512), nullable=False, server_default=""),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("scheduler", sa.String(16), nullable=False, server_default="fifo"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
        sa.CheckConstraint("scheduler IN ('fifo', 'drf')", name="ck_agent_groups_scheduler"),
    )
    op.bulk_insert(groups, [{"name": "default", "description": "agents naming no group"}])
    presets = op.create_table(
        "resource_presets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("resource_slots", JSONB, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.bulk_insert(presets, [{"name": k, "resource_slots": v} for k, v in PRESETS.items()])
    op.create_table(
        "keypair_resource_policies",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("max_concurrent_sessions", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total_resource_slots", JSONB, nullable=False, server_default="{}"),
        sa.Column("max_session_lifetime", sa.Integer, nullable=False, server_default="0"),
        sa.Column("idle_timeout", sa.Integer, nullable=False, server_default="0"),
        sa.Column("allowed_groups", JSONB, nullable=False, server_default='["default"]'),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    )
    op.execute("INSERT INTO keypair_resource_policies (name) VALUES ('default')")
    op.execute("INSERT INTO keypair_resource_policies (name) SELECT DISTINCT resource_policy "
               "FROM keypair_policies WHERE resource_policy IS NOT NULL "
               "ON CONFLICT (name) DO NOTHING")
    op.create_foreign_key("fk_keypair_policies_resource_policy", "keypair_policies",
                          "keypair_resource_policies", ["resource_policy"], ["name"],
                          onupdate="CASCADE")
    op.add_column("agents", sa.Column("scaling_group", sa.String(64), nullable=False,
                                      server_default="default"))
    op.add_column("kernels", sa.Column("scaling_group", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("kernels", "scaling_group")
    op.drop_column("agents", "scaling_group")
    op.drop_constraint("fk_keypair_policies_resource_policy", "keypair_policies")
    op.drop_table("keypair_resource_policies")
    op.drop_table("resource_presets")
    op.drop_table("agent_groups")
