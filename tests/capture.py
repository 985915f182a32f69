"""What the test run saw, kept in one module (conftest is imported twice under two names)."""
from __future__ import annotations

CAPTURED_RESPONSES: list[str] = []
CAPTURED_LOGS: list[str] = []
UPSTREAM_SECRETS: set[str] = set()
