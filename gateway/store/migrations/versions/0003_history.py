"""Value history (gateway/history/tables.py): snapshot points and their holdings.

Revision ID: 0003_history
Revises: 0002_account_registry
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_history"
down_revision = "0002_account_registry"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "history_points",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("taken_at", sa.BigInteger, nullable=False),
        sa.Column("sums", sa.Text, nullable=False),
        sa.Column("states", sa.Text, nullable=False),
        sa.Column("rates", sa.Text, nullable=False),
        sa.Column("holdings_id", _ID, nullable=False),
    )
    op.create_index("ix_history_points_account_taken", "history_points", ["account_id", "taken_at"])
    op.create_table(
        "history_holdings",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("account_id", "digest", name="uq_history_holdings_account_digest"),
    )


def downgrade() -> None:
    op.drop_table("history_holdings")
    op.drop_index("ix_history_points_account_taken", table_name="history_points")
    op.drop_table("history_points")
