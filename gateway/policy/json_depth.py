"""How deeply a JSON text nests, decided before it is parsed.

Python's json parser recurses once per nesting level: a 10 KB body of `[[[[...` raises
RecursionError (and logs a traceback) instead of a parse error. `nesting_problem` looks
at the text's brackets only, with C-speed string operations (no Python loop over the
characters): strings are cut out, everything but brackets is dropped, then innermost
pairs are removed once per level, so the work stops after `limit` passes whatever the
input (a run of more than `limit` opening brackets is too deep at once).
"""
from __future__ import annotations

import functools
import re

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")

TOO_DEEP = "too deep"
UNBALANCED = "unbalanced"


@functools.lru_cache(maxsize=8)
def _openers(count: int) -> re.Pattern[bytes]:
    return re.compile(rb"[\[{]{%d}" % count)


def nesting_problem(text: str | bytes, limit: int) -> str | None:
    """TOO_DEEP when objects and arrays nest more than `limit` levels, UNBALANCED when the
    brackets cannot be JSON (then it is not JSON, and parsing it could still recurse
    without bound); None otherwise, including for text that is not JSON for other reasons
    (the parser reports those)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit:   # cannot nest deeper than it has brackets
        return None
    if _openers(limit + 1).search(brackets):   # a run of openers is depth already
        return TOO_DEEP
    for _ in range(limit):
        # Innermost pairs become "." first, so "{[]}" loses one level in a pass, not two.
        inner = brackets.replace(b"[]", b".").replace(b"{}", b".").replace(b".", b"")
        if not inner:
            return None
        if inner == brackets:
            return UNBALANCED
        brackets = inner
    return TOO_DEEP
