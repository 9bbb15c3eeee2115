"""Every SQLAlchemy table of the manager, in one place (migration 0001 creates them)."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from common.status import LIVE_STATUS_VALUES

metadata = sa.MetaData()

LIVE_STATUS_SQL = "status IN (" + ", ".join(f"'{s}'" for s in LIVE_STATUS_VALUES) + ")"

_now = sa.text("now()")

keypairs = sa.Table(
    "keypairs", metadata,
    sa.Column("access_key", sa.String(64), primary_key=True),
    # plaintext only until the first start with a secrets key (migration 0004), then NULL
    sa.Column("secret_key", sa.String(128), nullable=True),
    sa.Column("user_id", sa.String(256), nullable=False),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("concurrency_limit", sa.Integer, nullable=False, server_default="5"),
    sa.Column("num_queries", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("last_used", sa.DateTime(timezone=True), nullable=True),
    # added by migration 0004: the secret sealed by manager.secretbox; strict signing
    sa.Column("secret_key_enc", sa.Text, nullable=True),
    sa.Column("strict_signing", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.CheckConstraint("secret_key IS NOT NULL OR secret_key_enc IS NOT NULL",
                       name="ck_keypairs_has_secret"),
)

agents = sa.Table(
    "agents", metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("region", sa.String(64), nullable=False, server_default=""),
    sa.Column("addr", sa.String(256), nullable=False, server_default=""),
    sa.Column("version", sa.String(64), nullable=False, server_default=""),
    sa.Column("available_slots", JSONB, nullable=False, server_default="{}"),
    sa.Column("occupied_slots", JSONB, nullable=False, server_default="{}"),
    sa.Column("first_contact", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("last_heartbeat", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("lost_at", sa.DateTime(timezone=True), nullable=True),
    # added by migration 0005: the agent group it joined with (Join.group)
    sa.Column("scaling_group", sa.String(64), nullable=False, server_default="default"),
    # added by migration 0006 (nodes-accounting): the Join's instance id of the holder
    sa.Column("instance_id", sa.String(64), nullable=False, server_default=""),
)

images = sa.Table(
    "images", metadata,
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("agent_id", sa.String(128),
              sa.ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
    sa.Column("image_id", sa.String(256), nullable=False, server_default=""),
    sa.Column("labels", JSONB, nullable=False, server_default="{}"),
    sa.UniqueConstraint("name", "agent_id", name="uq_images_name_agent"),
)

kernels = sa.Table(
    "kernels", metadata,
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
    sa.Column("status_changed", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("slots", JSONB, nullable=False, server_default="{}"),
    sa.Column("environ", JSONB, nullable=False, server_default="{}"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("terminated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("num_queries", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_stat", JSONB, nullable=True),
    # added by migration 0005: the agent group the session was created for
    sa.Column("scaling_group", sa.String(64), nullable=True),
    # added by migration 0007 (queue): a PENDING session with queued_at set waits in the
    # queue of its agent group; see manager/services/queue.py
    sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("queue_seq", sa.BigInteger, nullable=True),  # arrival order
    sa.Column("queue_priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("queue_deadline", sa.DateTime(timezone=True), nullable=True),
    sa.Column("mounts", JSONB, nullable=False, server_default="[]"),
    sa.Index("ix_kernels_live_token", "access_key", "session_name", unique=True,
             postgresql_where=sa.text(LIVE_STATUS_SQL)),
    sa.Index("ix_kernels_agent_status", "agent_id", "status"),
    # added by migration 0006 (nodes-accounting): usage queries by time range
    sa.Index("ix_kernels_access_key_created", "access_key", "created_at"),
    sa.Index("ix_kernels_created", "created_at"),
)

kernel_events = sa.Table(
    "kernel_events", metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("kernel_id", UUID(as_uuid=True),
              sa.ForeignKey("kernels.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("from_status", sa.String(16), nullable=True),
    sa.Column("to_status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(256), nullable=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Index("ix_kernel_events_at", "at", "id"),  # migration 0006: the event log API
)

# ---- added by migration 0002: virtual folders and per-keypair API policy ----------------

vfolders = sa.Table(
    "vfolders", metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("host", sa.String(128), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(64),
              sa.ForeignKey("keypairs.access_key", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("last_used", sa.DateTime(timezone=True), nullable=True),
    sa.Column("max_files", sa.Integer, nullable=False, server_default="1000"),
    sa.Column("max_size", sa.BigInteger, nullable=False, server_default="1024"),  # MiB
    sa.Column("num_files", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cur_size", sa.BigInteger, nullable=False, server_default="0"),
    sa.UniqueConstraint("owner", "name", name="uq_vfolders_owner_name"),
)

vfolder_permissions = sa.Table(
    "vfolder_permissions", metadata,
    sa.Column("vfolder_id", UUID(as_uuid=True),
              sa.ForeignKey("vfolders.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("access_key", sa.String(64),
              sa.ForeignKey("keypairs.access_key", ondelete="CASCADE"), primary_key=True),
    sa.Column("permission", sa.String(2), nullable=False),
    sa.CheckConstraint("permission IN ('ro', 'rw', 'rd')", name="ck_vfolder_permission"),
    sa.Index("ix_vfolder_permissions_access_key", "access_key"),
)

keypair_policies = sa.Table(
    "keypair_policies", metadata,
    sa.Column("access_key", sa.String(64),
              sa.ForeignKey("keypairs.access_key", ondelete="CASCADE"), primary_key=True),
    sa.Column("rate_limit", sa.Integer, nullable=True),
    # NULL: the ``default`` policy (the foreign key is added by migration 0005)
    sa.Column("resource_policy", sa.String(256),
              sa.ForeignKey("keypair_resource_policies.name", onupdate="CASCADE",
                            name="fk_keypair_policies_resource_policy"), nullable=True),
)

# ---- added by migration 0003: virtual folder invitations ---------------------------------

vfolder_invitations = sa.Table(
    "vfolder_invitations", metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("vfolder_id", UUID(as_uuid=True),
              sa.ForeignKey("vfolders.id", ondelete="CASCADE"), nullable=False),
    sa.Column("inviter", sa.String(64),
              sa.ForeignKey("keypairs.access_key", ondelete="CASCADE"), nullable=False),
    sa.Column("invitee", sa.String(256), nullable=False),  # a keypair's user_id
    sa.Column("permission", sa.String(2), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.CheckConstraint("permission IN ('ro', 'rw', 'rd')",
                       name="ck_vfolder_invitation_permission"),
    sa.CheckConstraint("state IN ('pending', 'accepted', 'rejected')",
                       name="ck_vfolder_invitation_state"),
    sa.Index("ix_vfolder_invitations_pending", "vfolder_id", "invitee", unique=True,
             postgresql_where=sa.text("state = 'pending'")),
    sa.Index("ix_vfolder_invitations_invitee", "invitee"),
)

# ---- added by migration 0005: agent groups, resource presets, resource policies ----------

SCHEDULER_POLICIES = ("fifo", "drf")

agent_groups = sa.Table(  # Backend.AI's scaling groups
    "agent_groups", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("description", sa.String(512), nullable=False, server_default=""),
    sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("scheduler", sa.String(16), nullable=False, server_default="fifo"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.CheckConstraint("scheduler IN ('fifo', 'drf')", name="ck_agent_groups_scheduler"),
)

resource_presets = sa.Table(
    "resource_presets", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("resource_slots", JSONB, nullable=False, server_default="{}"),  # slot → amount
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
)

keypair_resource_policies = sa.Table(
    "keypair_resource_policies", metadata,
    sa.Column("name", sa.String(256), primary_key=True),
    # every limit: 0 (or an empty map) means none
    sa.Column("max_concurrent_sessions", sa.Integer, nullable=False, server_default="0"),
    sa.Column("total_resource_slots", JSONB, nullable=False, server_default="{}"),
    sa.Column("max_session_lifetime", sa.Integer, nullable=False, server_default="0"),  # s
    sa.Column("idle_timeout", sa.Integer, nullable=False, server_default="0"),  # s
    sa.Column("allowed_groups", JSONB, nullable=False, server_default='["default"]'),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
)

# ---- the generation product (manager/atlas, seeds 000 and 001; migration 0008) ----------

atlas_accounts = sa.Table(
    "atlas_accounts", metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),  # stored lower-cased
    sa.Column("nickname", sa.String(64), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=True),  # argon2id; NULL: social login only
    sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True),
    # reset-password: works beside the password until used or expired (migration 0009)
    sa.Column("temp_password_hash", sa.Text, nullable=True),
    sa.Column("temp_password_expires_at", sa.DateTime(timezone=True), nullable=True),
    # each account owns one keypair: its sessions, its `atlas` folder, HMAC access to jobs
    sa.Column("access_key", sa.String(64),
              sa.ForeignKey("keypairs.access_key", ondelete="RESTRICT"), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.UniqueConstraint("email", name="uq_atlas_accounts_email"),
    sa.UniqueConstraint("access_key", name="uq_atlas_accounts_access_key"),
)

atlas_sign_ins = sa.Table(  # one per sign-in: refresh tokens name it, sign-out revokes it
    "atlas_sign_ins", metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("account_id", UUID(as_uuid=True),
              sa.ForeignKey("atlas_accounts.id", ondelete="CASCADE"), nullable=False,
              index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

atlas_jobs = sa.Table(
    "atlas_jobs", metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),  # the requestId / jobId
    sa.Column("account_id", UUID(as_uuid=True),
              sa.ForeignKey("atlas_accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("model", sa.String(64), nullable=False),  # catalogue name
    sa.Column("item_name", sa.String(256), nullable=False),
    sa.Column("params", JSONB, nullable=False, server_default="{}"),  # epoch, resize, …
    sa.Column("client_id", sa.String(128), nullable=True),  # seed 001 progress channel
    sa.Column("status", sa.String(16), nullable=False, server_default="PROGRESS"),
    sa.Column("stage", sa.String(32), nullable=True),
    sa.Column("percent", sa.Float, nullable=False, server_default="0"),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("session_name", sa.String(64), nullable=True),  # the compute session running it
    sa.Column("outputs", JSONB, nullable=False, server_default="{}"),  # code → file name
    sa.Column("metrics", JSONB, nullable=False, server_default="{}"),
    # the replica driving it and until when (another takes over after that)
    sa.Column("driver", sa.String(128), nullable=True),
    sa.Column("driver_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("interrupt_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('PROGRESS', 'OK', 'NG')", name="ck_atlas_jobs_status"),
    sa.Index("ix_atlas_jobs_owner_model_created", "account_id", "model", "created_at", "id"),
    sa.Index("ix_atlas_jobs_client", "client_id"),
)
