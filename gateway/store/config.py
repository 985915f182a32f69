"""`[store]`: where the database is and the keys that encrypt secrets at rest (docs/CONFIG.md)."""
from __future__ import annotations

import base64
import binascii
import re

from pydantic import Field, SecretStr, field_validator

from gateway.support.strict_model import StrictModel

# sqlite:///relative/or//absolute/path, postgresql:// (or postgres://) with user, host, port, db
_SQLITE = re.compile(r"^sqlite:///(?P<path>.+)$")
_POSTGRES = re.compile(r"^postgres(?:ql)?://[^/]+/[^/?#]+(?:\?.*)?$")
KEY_BYTES = 32   # AES-256


def encryption_key(text: str) -> bytes:
    """The 32 bytes of one configured key; the error never shows the key."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("each key must be base64 (e.g. `openssl rand -base64 32`)") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"each key must be base64 of {KEY_BYTES} random bytes (one is {len(raw)} bytes)")
    return raw


class StoreConfig(StrictModel):
    # SecretStr: a PostgreSQL URL may carry a password
    url: SecretStr
    # base64 of 32 random bytes each; the first encrypts, all decrypt (key rotation)
    encryption_keys: list[SecretStr] = Field(min_length=1)
    pool_size: int = Field(5, ge=1, le=100)
    connect_timeout_s: float = Field(5.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _url(cls, v: SecretStr) -> SecretStr:
        text = v.get_secret_value().strip()
        if not (_SQLITE.match(text) or _POSTGRES.match(text)):
            raise ValueError("must be sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE")
        return SecretStr(text)

    @field_validator("encryption_keys")
    @classmethod
    def _keys(cls, v: list[SecretStr]) -> list[SecretStr]:
        for key in v:
            encryption_key(key.get_secret_value())
        return v

    @property
    def keys(self) -> list[bytes]:
        return [encryption_key(k.get_secret_value()) for k in self.encryption_keys]

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_secret_value().startswith("sqlite:")

    @property
    def sqlite_path(self) -> str | None:
        m = _SQLITE.match(self.url.get_secret_value())
        return m.group("path") if m else None

    def safe_url(self) -> str:
        """The URL with any password masked, for messages."""
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", self.url.get_secret_value())
