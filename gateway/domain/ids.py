"""Opaque, stable global ids for Wallet and Holding (Account and Token ids are readable)."""
from __future__ import annotations

import base64

_SEP = "\x1f"


def encode(type_name: str, *parts: str) -> str:
    raw = _SEP.join((type_name, *parts)).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(global_id: str) -> tuple[str, list[str]] | None:
    """(type, parts) of an id made by `encode`, or None for anything else."""
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    type_name, *parts = text.split(_SEP)
    if not parts:
        return None
    return type_name, parts


def wallet_id(source_value: str, account_id: str, local_id: str) -> str:
    return encode("Wallet", source_value, account_id, local_id)


def holding_id(source_value: str, account_id: str, wallet_local_id: str, token_id: str) -> str:
    return encode("Holding", source_value, account_id, wallet_local_id, token_id)
