"""Alembic's entry: always handed an open connection by gateway/store/schema_version.py
(`balance-gateway store migrate`), so no URL or logging setup lives here."""
from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None,
                  # SQLite cannot ALTER most things in place: batch mode copies the table
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
