"""The registry's tables (created by gateway/store/migrations/versions/0002_account_registry.py).

No column holds a secret in plain text: upstream credentials are sealed (crypto.py), gateway
keys are SHA-256 digests, hints are at most the last 4 characters, and the audit says what
was done, never with what secret."""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
Stamp = sa.DateTime(timezone=True)

accounts = sa.Table(
    "accounts", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", Stamp, nullable=False),
    # bumped when an identity leaves the account: cached upstream pages read under the old
    # links are keyed by the old value, so they are never served to the account again
    sa.Column("cache_epoch", sa.Integer, nullable=False, server_default="0"),
)

links = sa.Table(
    "account_links", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("identity", sa.String(256), nullable=False),   # CAIP-10, wallet uuid or address, or "token"/"api_key"
    sa.Column("secret", sa.Text, nullable=True),             # sealed credential (crypto.py), if the link has one
    sa.Column("hint", sa.String(4), nullable=True),          # last characters of the credential
    sa.Column("created_at", Stamp, nullable=False),
    sa.UniqueConstraint("account_id", "source", "identity", name="uq_account_links_identity"),
)

api_keys = sa.Table(
    "account_api_keys", metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("account_id", sa.String(64), sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),   # sha256 hex of the key
    sa.Column("label", sa.String(200), nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("last_used_at", Stamp, nullable=True),
)

# One row: every change bumps it inside its own transaction. The row lock orders the
# changes, so a process polling `version` never skips one committed out of order.
feed = sa.Table(
    "account_feed", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)

changes = sa.Table(
    "account_changes", metadata,
    sa.Column("version", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("at", Stamp, nullable=False),
)

audit = sa.Table(
    "account_audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", Stamp, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),      # "key:<digest prefix>", "jwt:...", "cli:<user>"
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("account_id", sa.String(64), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),            # JSON: source, identity, key id, label; no secret
)
