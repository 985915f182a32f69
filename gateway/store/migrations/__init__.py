"""Alembic migrations of the store (run by gateway/store/schema_version.py, never by hand-written SQL)."""
