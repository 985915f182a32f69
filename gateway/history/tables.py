"""The history's two tables (created by migration 0003_history; tests may use
`metadata.create_all`). Times are UTC epoch microseconds: integer bucketing (hour, day) is
then the same arithmetic on SQLite and PostgreSQL. Every amount is a Decimal string."""
from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, String, Table, Text, UniqueConstraint, Index

metadata = MetaData()

# PostgreSQL BIGSERIAL; SQLite's rowid alias must be INTEGER to autoincrement.
_ID = BigInteger().with_variant(Integer, "sqlite")

# One row per snapshot: what valueHistory reads, small enough to scan a year of in one index range.
history_points = Table(
    "history_points", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("account_id", String(128), nullable=False),
    Column("taken_at", BigInteger, nullable=False),          # epoch microseconds, UTC
    # {"DALP": {"EUR": ["1234.5", 3]}, ...}: per source and currency, the exact sum of the
    # values and how many holdings it covers; plus {"_unpriced": {"COBO": 1}}
    Column("sums", Text, nullable=False),
    Column("states", Text, nullable=False),                  # {"CALICO": "OK", "DALP": "FAILED", ...}
    Column("rates", Text, nullable=False),                   # the exchange rates known then (codec.rates_json)
    Column("holdings_id", _ID, nullable=False),              # history_holdings.id: what holdingsAt returns
)
Index("ix_history_points_account_taken", history_points.c.account_id, history_points.c.taken_at)

# The holdings of a snapshot, zlib-compressed JSON, stored once per account per distinct
# content: consecutive snapshots of unchanged holdings share one row.
history_holdings = Table(
    "history_holdings", metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("account_id", String(128), nullable=False),
    Column("digest", String(64), nullable=False),            # sha256 of the uncompressed JSON
    Column("payload", LargeBinary, nullable=False),
    UniqueConstraint("account_id", "digest", name="uq_history_holdings_account_digest"),
)
