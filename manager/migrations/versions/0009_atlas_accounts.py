"""Atlas accounts: a temporary password (reset-password) beside the password.

The old password keeps working until the temporary one is used, so anyone who knows an
e-mail address cannot lock its owner out by asking for resets.

Revision ID: 0009_atlas_accounts
Revises: 0008_atlas
Create Date: 2026-11-24
"""
from __future__ import annotations

from alembic import op

revision = "0009_atlas_accounts"
down_revision = "0008_atlas"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE atlas_accounts ADD COLUMN temp_password_hash TEXT")
    op.execute("ALTER TABLE atlas_accounts "
               "ADD COLUMN temp_password_expires_at TIMESTAMP WITH TIME ZONE")


def downgrade() -> None:
    op.drop_column("atlas_accounts", "temp_password_expires_at")
    op.drop_column("atlas_accounts", "temp_password_hash")
