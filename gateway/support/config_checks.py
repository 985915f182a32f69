"""Checks of single config values, so a bad one stops startup as a one-line config error
naming its field (gateway/config.py runs them as pydantic validators) rather than as a
traceback when the app is built or first used.

Each check raises ValueError with a message that never quotes the value (it may be a
secret, or hold one: a Redis URL's password).
"""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import urlsplit

# The Redis URL schemes the gateway can connect with (redis-py's `from_url`). A scheme
# added here is accepted by the config from then on.

_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CAIP2 = re.compile(r"^[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}$")
_CAIP10 = re.compile(r"^[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}:[-.%a-zA-Z0-9]{1,128}$")
_EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def host(value: str) -> str:
    """An interface to listen on: an IP address or a host name ("" listens on all)."""
    if value == "" or _HOSTNAME.match(value):
        return value
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        raise ValueError("must be an IP address or a host name") from None
    return value


def http_url(value: str, what: str = "an http(s) URL") -> str:
    parts = _split(value, what)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be {what}")
    return value


def origin(value: str) -> str:
    """A browser origin: scheme://host[:port], nothing after."""
    parts = _split(value, "an origin (https://app.example.com)")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query or parts.fragment:
        raise ValueError("each origin must be scheme://host[:port] (https://app.example.com), without a path")
    return value


def header_name(value: str) -> str:
    if not _HEADER_NAME.match(value):
        raise ValueError("each header must be an HTTP header name")
    return value


def caip2(value: str) -> str:
    if not _CAIP2.match(value):
        raise ValueError("must be a CAIP-2 chain id (eip155:1)")
    return value


def caip10(value: str) -> str:
    if not _CAIP10.match(value):
        raise ValueError("each OneBalance account must be CAIP-10 (namespace:reference:address)")
    if value.startswith("eip155:") and not _EVM_ADDRESS.match(value.rsplit(":", 1)[1]):
        raise ValueError("an eip155 OneBalance account needs a 0x address of 40 hex digits")
    return value


def evm_address(value: str) -> str:
    if not _EVM_ADDRESS.match(value):
        raise ValueError("must be a 0x address of 40 hex digits")
    return value


def readable_json(path: str, what: str) -> object:
    """The parsed JSON file; the message says why it cannot be read or parsed."""
    import json
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {path} is not JSON ({type(exc).__name__})") from None


def _split(value: str, what: str):  # -> SplitResult
    if any(c.isspace() for c in value):
        raise ValueError(f"must be {what}, without spaces")
    try:
        parts = urlsplit(value)
        parts.port   # raises on a port that is not a number in 0-65535
    except ValueError:
        raise ValueError(f"must be {what} (its host or port cannot be read)") from None
    return parts
