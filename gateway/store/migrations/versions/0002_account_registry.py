"""The account registry (gateway/accounts/tables.py): accounts, their links and gateway
keys, the change feed every process polls, and the audit of admin changes.

Revision ID: 0002_account_registry
Revises: 0001_store_foundation
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_account_registry"
down_revision = "0001_store_foundation"
branch_labels = None
depends_on = None

Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("cache_epoch", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "account_links",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("identity", sa.String(256), nullable=False),
        sa.Column("secret", sa.Text, nullable=True),
        sa.Column("hint", sa.String(4), nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.UniqueConstraint("account_id", "source", "identity", name="uq_account_links_identity"),
    )
    op.create_index("ix_account_links_account", "account_links", ["account_id"])
    op.create_table(
        "account_api_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("last_used_at", Stamp, nullable=True),
    )
    op.create_index("ix_account_api_keys_account", "account_api_keys", ["account_id"])
    op.create_table(
        "account_feed",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(sa.table("account_feed", sa.column("id", sa.Integer), sa.column("version", sa.BigInteger)),
                   [{"id": 1, "version": 0}])
    op.create_table(
        "account_changes",
        sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("at", Stamp, nullable=False),
    )
    op.create_table(
        "account_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", Stamp, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_account_audit_account", "account_audit", ["account_id"])


def downgrade() -> None:
    for table in ("account_audit", "account_changes", "account_feed", "account_api_keys", "account_links", "accounts"):
        op.drop_table(table)
