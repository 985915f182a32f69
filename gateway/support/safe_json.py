"""JSON and log text that can always be written, whatever a client put in its strings.

Python's json module decodes a `\\ud800` escape into a lone surrogate, which is not valid
Unicode: orjson refuses to encode it, and a response or log line quoting it (an unknown
`operationName`, a variable echoed in a message) would fail. Every response body and
JSON log line goes through `dumps`, which replaces lone surrogates with U+FFFD (the
Unicode replacement character) so the output is always valid UTF-8. Control characters
need nothing in JSON (they are escaped); `one_line` escapes them for plain-text logs.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import orjson

_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 and C1 controls, DEL, and the Unicode line/paragraph separators: each could break or
# forge a line in a plain-text log.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
REPLACEMENT = "\ufffd"


def scrub(text: str) -> str:
    """The text with every lone surrogate replaced by U+FFFD."""
    return _SURROGATE.sub(REPLACEMENT, text)


def one_line(text: str) -> str:
    """The text as one printable line: controls escaped (`\\n`, `\\x1b`), lone surrogates replaced."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), scrub(text))


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {(scrub(k) if isinstance(k, str) else k): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return value


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """orjson.dumps; when a string in `value` is not valid Unicode, the same with it scrubbed.
    The common case costs nothing extra: the value is walked only after orjson refused it."""
    try:
        return orjson.dumps(value, default=default)
    except orjson.JSONEncodeError:
        scrubbing = None if default is None else (lambda v: _scrubbed(default(v)))   # what default makes, too
        return orjson.dumps(_scrubbed(value), default=scrubbing)
