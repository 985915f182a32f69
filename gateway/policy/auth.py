"""Who is calling: an account API key (`Authorization: Bearer KEY` or `X-API-Key`) or,
when configured, a JWT bearer token whose claim names the account."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jwt
from starlette.datastructures import Headers

from gateway.config import AccountConfig, JwtConfig
from resolvers.context import ADMIN, GatewayState, key_digest


@dataclass(frozen=True, slots=True)
class Caller:
    account: AccountConfig | None    # None for an admin
    is_admin: bool
    client_id: str                   # stable, non-secret id of the credential (rate limits, logs)


class AuthError(Exception):
    """The credential was presented but is not acceptable; the message is safe to show."""


def presented_credential(headers: Headers) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2 and credential.startswith("eyJ")


class Authenticator:
    def __init__(self, state: GatewayState):
        self.state = state
        self.jwt = state.config.auth.jwt
        self._keys = _load_jwks(self.jwt.jwks_file) if self.jwt and self.jwt.jwks_file else None

    async def prepare(self, credential: str) -> None:
        """Bring the account a credential may name into memory (the account registry loads
        accounts on first use); raises RegistryError REGISTRY_UNAVAILABLE when it cannot
        look. The credential is not judged here: `identify` does that, on memory only."""
        directory = self.state.directory
        if directory is None:
            return
        if self.jwt is not None and looks_like_jwt(credential):
            try:   # only to know which account to load; the signature is checked by identify
                claims = jwt.decode(credential, options={"verify_signature": False})
            except jwt.PyJWTError:
                return
            account_id = claims.get(self.jwt.account_claim)
            if isinstance(account_id, str) and self.state.config.account(account_id) is None and len(account_id) <= 128:
                await directory.ensure_account(account_id)
            return
        digest = key_digest(credential)
        if digest not in self.state.key_index:
            await directory.ensure_key(digest)

    def identify(self, credential: str) -> Caller:
        if self.jwt is not None and looks_like_jwt(credential):
            return self._from_jwt(credential, self.jwt)
        return self._from_key(credential)

    def _from_key(self, key: str) -> Caller:
        """Looked up by SHA-256 digest: no comparison ever runs on the key itself, so timing
        reveals nothing about the configured keys (the index holds digests only)."""
        digest = key_digest(key)
        owner = self.state.key_owner(digest)   # the config's keys, then the registry's
        account = self.state.account(owner) if owner not in (None, ADMIN) else None
        if owner is None or (owner != ADMIN and account is None):
            raise AuthError("the API key is not valid")
        return Caller(account=account, is_admin=owner == ADMIN, client_id="key:" + digest.hex()[:16])

    def _from_jwt(self, token: str, cfg: JwtConfig) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
            if cfg.hs256_secret is not None:
                key, algorithms = cfg.hs256_secret.get_secret_value(), ["HS256"]
            else:
                key, algorithms = self._jwks_key(header.get("kid")), ["RS256", "ES256"]
            claims = jwt.decode(token, key, algorithms=algorithms, audience=cfg.audience, issuer=cfg.issuer,
                                leeway=cfg.leeway_s,
                                options={"require": ["exp"], "verify_aud": cfg.audience is not None,
                                         "verify_iss": cfg.issuer is not None})
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("the token is not valid yet") from None
        except (jwt.InvalidTokenError, KeyError, ValueError):
            raise AuthError("the token is not valid") from None
        subject = f"jwt:{claims.get('iss', '')}:{claims.get(cfg.account_claim, '')}"
        client_id = "jwt:" + key_digest(subject).hex()[:16]
        if cfg.admin_claim and _claim_has(claims.get(cfg.admin_claim), cfg.admin_value):
            return Caller(account=None, is_admin=True, client_id=client_id)
        account_id = claims.get(cfg.account_claim)
        account = self.state.account(account_id) if isinstance(account_id, str) else None
        if account is None:
            raise AuthError("the token names no account of this gateway")
        return Caller(account=account, is_admin=False, client_id=client_id)

    def _jwks_key(self, kid: str | None):
        assert self._keys is not None
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return self._keys[kid]


def _claim_has(value: object, wanted: str) -> bool:
    return value == wanted or (isinstance(value, list) and wanted in value)


def _load_jwks(path: str) -> dict[str | None, object]:
    data = json.loads(Path(path).read_text())
    return {k.key_id: k.key for k in jwt.PyJWKSet.from_dict(data).keys}
