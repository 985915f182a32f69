"""Who is calling: an account API key from `Authorization: Bearer KEY` or `X-API-Key`."""
from __future__ import annotations

import hmac

from starlette.datastructures import Headers

from gateway.config import AccountConfig
from resolvers.context import ADMIN, GatewayState, key_digest


def presented_key(headers: Headers) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def identify(state: GatewayState, key: str) -> AccountConfig | str | None:
    """The account a key belongs to, ADMIN for an admin key, or None.

    Looked up by SHA-256 digest, then confirmed with a constant-time comparison, so
    timing reveals nothing about the configured keys."""
    digest = key_digest(key)
    owner = state.key_index.get(digest)
    if owner == ADMIN:
        keys = state.config.auth.admin_keys
    elif owner is not None and (account := state.account(owner)) is not None:
        keys = account.api_keys
    else:
        return None
    if any(hmac.compare_digest(key_digest(k.get_secret_value()), digest) for k in keys):
        return ADMIN if owner == ADMIN else account
    return None
