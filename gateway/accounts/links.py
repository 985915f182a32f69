"""What an account's identity at each source may look like, checked by the very rules the
config file's `[[accounts]]` blocks are checked by (the sources' AccountBlock models,
gateway/sources/<name>/config.py), plus the registry's own: Cobo wallets are UUIDs.

A link row is (source, identity, credential or None). Token sources (Calico, Cryptofuse)
and DALP hold one link that a new one replaces; OneBalance accounts and Cobo wallets add up."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from gateway.accounts.errors import RegistryError, bad_input
from gateway.config import AccountConfig, GatewayConfig
from gateway.domain.errors import ClientCode
from gateway.sources.catalog import Source
from gateway.support import config_checks as check

ACCOUNT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
TOKEN, API_KEY = "token", "api_key"     # the identity of a link that is a credential
# How each linkable source's links become its `[[accounts]]` block, by source key.
REPLACED = {"calico", "cryptofuse", "dalp"}   # one link per account: a new one replaces it


@dataclass(frozen=True, slots=True)
class LinkInput:
    """SourceLinkInput, whoever sent it (GraphQL or the CLI)."""
    source: str
    token: str | None = None
    accounts: list[str] | None = None
    wallet_uuids: list[str] | None = None
    api_key: str | None = None
    wallet: str | None = None


@dataclass(frozen=True, slots=True)
class Link:
    source: Source
    identity: str
    secret: str | None = None     # plain only in memory; sealed in the store

    @property
    def hint(self) -> str | None:
        return credential_hint(self.secret)


# the GraphQL spelling of each input field, for `extensions.field`
FIELDS = {"token": "link.token", "accounts": "link.accounts", "wallet_uuids": "link.walletUuids",
          "api_key": "link.apiKey", "wallet": "link.wallet"}
USES = {"calico": {"token"}, "cryptofuse": {"token"}, "onebalance": {"accounts"},
        "cobo": {"wallet_uuids"}, "dalp": {"api_key", "wallet"}}


def credential_hint(secret: str | None) -> str | None:
    """At most the last 4 characters, fewer of a short credential (never half of it)."""
    if not secret:
        return None
    shown = min(4, len(secret) // 4)
    return secret[-shown:] if shown else None


def check_account_id(account_id: str, field: str = "id") -> str:
    if not isinstance(account_id, str) or not ACCOUNT_ID.match(account_id):
        raise bad_input(field, "an account id is 1 to 64 of A-Z a-z 0-9 . _ -")
    return account_id


def source_named(name: str, config: GatewayConfig) -> Source:
    source = next((s for s in Source if name in (s.value, s.key) or name.upper() == s.value), None)
    if source is None or source.key not in USES:
        raise bad_input("link.source", f"unknown source {name[:40]!r}: one of {', '.join(s.value for s in Source if s.key in USES)}")
    if config.sources.get(source) is None:
        raise bad_input("link.source", f"this gateway has no [sources.{source.key}] section")
    return source


def new_links(link: LinkInput, config: GatewayConfig) -> list[Link]:
    """The links one SourceLinkInput asks for; BAD_USER_INPUT naming the field otherwise."""
    source = source_named(link.source, config)
    uses = USES[source.key]
    for name, field in FIELDS.items():
        if name not in uses and getattr(link, name) is not None:
            raise bad_input(field, f"{source.value} takes no {field.removeprefix('link.')}")
    if "token" in uses:
        return [Link(source, TOKEN, _credential(link.token, "token"))]
    if source.key == "onebalance":
        return [Link(source, _checked(check.caip10, item, f"link.accounts[{i}]"))
                for i, item in enumerate(_non_empty_list(link.accounts, "accounts"))]
    if source.key == "cobo":
        return [Link(source, _uuid(item, f"link.walletUuids[{i}]"))
                for i, item in enumerate(_non_empty_list(link.wallet_uuids, "wallet_uuids"))]
    # dalp: the participant's own key, or a wallet read with the source-level key
    if (link.api_key is None) == (link.wallet is None):
        raise bad_input("link.apiKey", "DALP takes exactly one of apiKey or wallet")
    if link.api_key is not None:
        return [Link(source, API_KEY, _credential(link.api_key, "api_key"))]
    wallet = _checked(check.evm_address, link.wallet, "link.wallet")
    if getattr(config.sources.get(source), "api_key", None) is None:
        raise bad_input("link.wallet", "a DALP wallet is read with [sources.dalp] api_key, which this gateway lacks")
    return [Link(source, wallet)]


def merged(existing: list[Link], added: list[Link]) -> list[Link]:
    """The account's links after adding some: a replacing source's old link goes."""
    sources = {l.source for l in added if l.source.key in REPLACED}
    kept = [l for l in existing if l.source not in sources]
    have = {(l.source, l.identity) for l in kept}
    return kept + [l for l in added if (l.source, l.identity) not in have]


def account_config(account_id: str, links: list[Link]) -> AccountConfig:
    """The account as the rest of the gateway reads accounts: the config's own model,
    validated by its own rules (a link the store holds but the model refuses is refused)."""
    blocks: dict[str, Any] = {}
    for link in links:
        key = link.source.key
        if key in ("calico", "cryptofuse"):
            blocks[key] = {"token": link.secret}
        elif key == "onebalance":
            blocks.setdefault(key, {"accounts": []})["accounts"].append(link.identity)
        elif key == "cobo":
            blocks.setdefault(key, {"wallet_uuids": []})["wallet_uuids"].append(link.identity)
        elif key == "dalp":
            blocks[key] = {"api_key": link.secret} if link.identity == API_KEY else {"wallet": link.identity}
    try:
        return AccountConfig.model_validate({"id": account_id, **blocks})
    except ValidationError as exc:
        where = exc.errors(include_input=False)[0]["loc"]
        raise RegistryError(ClientCode.BAD_USER_INPUT, "the link is not usable: " + ".".join(map(str, where)),
                            "link") from None


def links_of(account: AccountConfig) -> list[Link]:
    """Every link of an account, from the config file or the store alike."""
    out: list[Link] = []
    for source in Source:
        block = account.source(source)
        if block is None:
            continue
        key = source.key
        if key in ("calico", "cryptofuse"):
            out.append(Link(source, TOKEN, block.token.get_secret_value()))
        elif key == "onebalance":
            out.extend(Link(source, a) for a in block.accounts)
        elif key == "cobo":
            out.extend(Link(source, u) for u in dict.fromkeys(block.wallet_uuids))
        elif key == "dalp":
            out.append(Link(source, API_KEY, block.api_key.get_secret_value()) if block.api_key is not None
                       else Link(source, block.wallet))
    return out


def _credential(value: str | None, name: str) -> str:
    field = FIELDS[name]
    if value is None:
        raise bad_input(field, f"{field.removeprefix('link.')} is required for this source")
    if not value.strip() or value != value.strip() or any(c in value for c in "\r\n\x00"):
        raise bad_input(field, f"{field.removeprefix('link.')} must be non-empty, without surrounding spaces or line breaks")
    if len(value) > 4096:
        raise bad_input(field, f"{field.removeprefix('link.')} is over 4096 characters")
    return value


def _non_empty_list(values: list[str] | None, name: str) -> list[str]:
    field = FIELDS[name]
    if not values:
        raise bad_input(field, f"{field.removeprefix('link.')} needs at least one entry")
    if len(values) > 100:
        raise bad_input(field, "at most 100 entries per link")
    return values


def _checked(rule: Any, value: str, field: str) -> str:
    if len(value) > 256:
        raise bad_input(field, "over 256 characters")
    try:
        return rule(value)
    except ValueError as exc:
        raise bad_input(field, str(exc)) from None


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _uuid(value: str, field: str) -> str:
    if not _UUID.match(value):
        raise bad_input(field, "a Cobo wallet is a UUID (8-4-4-4-12 hex digits)")
    return str(uuid.UUID(value))
