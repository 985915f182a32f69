"""The database behind the gateway's live state (accounts, history): its `[store]` config,
the async engine, the Alembic migrations and the schema-version check `serve` runs."""
