"""Upstream credentials at rest: AES-256-GCM under the `[store] encryption_keys`.

A sealed value is `v1.<key id>.<base64url(nonce || ciphertext+tag)>`: it names the key that
sealed it (the first 8 bytes of SHA-256 of the key, hex; not the key), so every configured
key can open what it sealed and `store rotate-key` knows what to re-seal. The associated
data binds a ciphertext to its row (account, source, identity): one copied onto another
row does not open."""
from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
NONCE_BYTES = 12


class SealError(Exception):
    """A sealed value no configured key opens (wrong key, tampered, other row); names no secret."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:16]


class SecretBox:
    def __init__(self, keys: list[bytes]):
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._keys = {key_id(k): AESGCM(k) for k in keys}
        self.current = key_id(keys[0])

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.current].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{VERSION}.{self.current}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, context: str) -> str:
        version, kid, payload = _parts(sealed)
        aead = self._keys.get(kid)
        if aead is None:
            raise SealError(f"sealed with key {kid}, which is not among [store] encryption_keys")
        raw = base64.urlsafe_b64decode(payload)
        try:
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode()
        except InvalidTag:
            raise SealError(f"a value sealed with key {kid} does not open (tampered, or not this row's)") from None

    def sealed_with(self, sealed: str) -> str:
        return _parts(sealed)[1]

    def needs_reseal(self, sealed: str) -> bool:
        return self.sealed_with(sealed) != self.current


def _parts(sealed: str) -> tuple[str, str, str]:
    parts = sealed.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise SealError("not a sealed value of this release")
    return parts[0], parts[1], parts[2]
