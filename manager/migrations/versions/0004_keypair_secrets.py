"""Keypair secrets encrypted at rest and per-keypair strict signing.

``secret_key_enc`` holds the secret sealed by ``manager.secretbox`` (the key lives
outside the database); ``secret_key`` becomes nullable and is emptied by the first
manager start with a secrets key (``manager.services.keypairs.seal_plaintext``), since a
migration has no key. ``strict_signing`` makes the keypair refuse v4 signatures.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("keypairs", sa.Column("secret_key_enc", sa.Text, nullable=True))
    op.add_column("keypairs", sa.Column("strict_signing", sa.Boolean, nullable=False,
                                        server_default=sa.false()))
    op.alter_column("keypairs", "secret_key", existing_type=sa.String(128), nullable=True)
    op.create_check_constraint("ck_keypairs_has_secret", "keypairs",
                               "secret_key IS NOT NULL OR secret_key_enc IS NOT NULL")


def downgrade() -> None:
    # sealed secrets cannot be decrypted here (no key): refuse rather than lose them
    op.execute("DO $$ BEGIN IF EXISTS (SELECT 1 FROM keypairs WHERE secret_key IS NULL) "
               "THEN RAISE EXCEPTION 'keypairs hold encrypted secrets; downgrade refused'; "
               "END IF; END $$")
    op.drop_constraint("ck_keypairs_has_secret", "keypairs")
    op.alter_column("keypairs", "secret_key", existing_type=sa.String(128), nullable=False)
    op.drop_column("keypairs", "strict_signing")
    op.drop_column("keypairs", "secret_key_enc")
