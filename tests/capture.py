"""What the test run saw, kept in one module (conftest is imported twice under two names)."""
from __future__ import annotations

CAPTURED_RESPONSES: list[str] = []
CAPTURED_LOGS: list[str] = []
UPSTREAM_SECRETS: set[str] = set()
UPSTREAM_BODY = "injected fault (upstream error body)"   # what the simulators' faults answer


def leaks(texts: list[str]) -> list[tuple[str, str]]:
    """(secret, where) for every upstream credential or error body found in `texts`."""
    return [(secret, text[:200]) for text in texts for secret in UPSTREAM_SECRETS | {UPSTREAM_BODY}
            if secret in text]
