"""The generation product (manager/atlas): accounts, their sign-ins and their jobs.

Revision ID: 0008_atlas
Revises: 0007_queue
Create Date: 2026-11-24
"""
from __future__ import annotations

from alembic import op

revision = "0008_atlas"
down_revision = "0007_queue"
branch_labels = None
depends_on = None

# the schema as it stood at this revision (manager/db/tables.py holds today's)
STATEMENTS = (
    """CREATE TABLE atlas_accounts (
    id UUID NOT NULL,
    email VARCHAR(320) NOT NULL,
    nickname VARCHAR(64) NOT NULL,
    password_hash TEXT,
    email_verified_at TIMESTAMP WITH TIME ZONE,
    access_key VARCHAR(64) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT uq_atlas_accounts_email UNIQUE (email),
    CONSTRAINT uq_atlas_accounts_access_key UNIQUE (access_key),
    FOREIGN KEY(access_key) REFERENCES keypairs (access_key) ON DELETE RESTRICT
)""",
    """CREATE TABLE atlas_sign_ins (
    id UUID NOT NULL,
    account_id UUID NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    revoked_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (id),
    FOREIGN KEY(account_id) REFERENCES atlas_accounts (id) ON DELETE CASCADE
)""",
    """CREATE INDEX ix_atlas_sign_ins_account_id ON atlas_sign_ins (account_id)""",
    """CREATE TABLE atlas_jobs (
    id UUID NOT NULL,
    account_id UUID NOT NULL,
    model VARCHAR(64) NOT NULL,
    item_name VARCHAR(256) NOT NULL,
    params JSONB DEFAULT '{}' NOT NULL,
    client_id VARCHAR(128),
    status VARCHAR(16) DEFAULT 'PROGRESS' NOT NULL,
    stage VARCHAR(32),
    percent FLOAT DEFAULT '0' NOT NULL,
    error TEXT,
    session_name VARCHAR(64),
    outputs JSONB DEFAULT '{}' NOT NULL,
    metrics JSONB DEFAULT '{}' NOT NULL,
    driver VARCHAR(128),
    driver_until TIMESTAMP WITH TIME ZONE,
    interrupt_requested BOOLEAN DEFAULT false NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE,
    finished_at TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (id),
    CONSTRAINT ck_atlas_jobs_status CHECK (status IN ('PROGRESS', 'OK', 'NG')),
    FOREIGN KEY(account_id) REFERENCES atlas_accounts (id) ON DELETE CASCADE
)""",
    """CREATE INDEX ix_atlas_jobs_client ON atlas_jobs (client_id)""",
    """CREATE INDEX ix_atlas_jobs_owner_model_created
       ON atlas_jobs (account_id, model, created_at, id)""",
)


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for table in ("atlas_jobs", "atlas_sign_ins", "atlas_accounts"):
        op.drop_table(table)
