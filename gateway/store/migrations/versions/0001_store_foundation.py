"""The store's root revision: every later migration (accounts, history) chains on it.

`store_info` records when the store was created and by which release, so a dump or an
operator can tell what made it.

Revision ID: 0001_store_foundation
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_store_foundation"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_info",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.bulk_insert(sa.table("store_info", sa.column("key", sa.String), sa.column("value", sa.String)),
                   [{"key": "created_by", "value": "balance-gateway"}])


def downgrade() -> None:
    op.drop_table("store_info")
