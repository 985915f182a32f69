"""The account registry's mutations and the Account fields that show links and keys.

Admins only (an admin key or an admin JWT): anyone else is FORBIDDEN before anything is read
or written, and no mutation calls an upstream. Each answer is marked uncacheable, so it is
never kept or shared with an identical request (gateway/policy/response_reuse.py)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from graphql import GraphQLError

from gateway.accounts.admin import IssuedKey, Registry
from gateway.accounts.errors import RegistryError
from gateway.accounts.links import LinkInput, links_of
from gateway.domain.errors import ClientCode
from gateway.sources.catalog import Source
from resolvers.accounts import AccountRef
from resolvers.context import RequestContext
from resolvers.errors import client_error

log = logging.getLogger("gateway.accounts")


@dataclass(frozen=True, slots=True)
class SourceLinkView:
    source: Source
    identity: str
    credential_hint: str | None


@dataclass(frozen=True, slots=True)
class ApiKeyView:
    key_id: str
    label: str | None
    created_at: datetime
    last_used_at: datetime | None


def _registry(ctx: RequestContext) -> Registry:
    if ctx.ledger is not None:
        ctx.ledger.uncacheable = True
    if not ctx.is_admin:
        raise client_error(ClientCode.FORBIDDEN, "only an admin key or admin token may change accounts")
    registry = ctx.state.registry_admin
    if registry is None:
        raise client_error(ClientCode.REGISTRY_UNAVAILABLE,
                           "this gateway has no account registry ([store] url is not configured)")
    return registry


def _coded(exc: RegistryError) -> GraphQLError:
    extensions: dict[str, str] = {"code": exc.code.value}
    if exc.field:
        extensions["field"] = exc.field
    return GraphQLError(exc.message, extensions=extensions)


def _ref(stored) -> AccountRef:
    return AccountRef(id=stored.id, config=stored.config)


async def create_account(ctx: RequestContext, account_id: str) -> AccountRef:
    registry = _registry(ctx)
    try:
        return _ref(await registry.create_account(ctx.actor, account_id))
    except RegistryError as exc:
        raise _coded(exc) from None


async def delete_account(ctx: RequestContext, account_id: str) -> bool:
    registry = _registry(ctx)
    try:
        deleted = await registry.delete_account(ctx.actor, account_id)
    except RegistryError as exc:
        raise _coded(exc) from None
    history = ctx.state.history
    if deleted and history is not None:
        try:   # after the registry's commit: the account is gone whatever happens here
            await history.store.forget(account_id)
        except Exception as exc:
            log.error("history: the deleted account's history was not removed (%s)", type(exc).__name__)
    return deleted


async def link_source(ctx: RequestContext, account_id: str, link: LinkInput) -> AccountRef:
    registry = _registry(ctx)
    try:
        return _ref(await registry.link(ctx.actor, account_id, link))
    except RegistryError as exc:
        raise _coded(exc) from None


async def unlink_source(ctx: RequestContext, account_id: str, source: Source, identity: str | None) -> AccountRef:
    registry = _registry(ctx)
    try:
        return _ref(await registry.unlink(ctx.actor, account_id, source.value, identity))
    except RegistryError as exc:
        raise _coded(exc) from None


async def issue_api_key(ctx: RequestContext, account_id: str, label: str | None) -> IssuedKey:
    registry = _registry(ctx)
    try:
        return await registry.issue_key(ctx.actor, account_id, label)
    except RegistryError as exc:
        raise _coded(exc) from None


async def revoke_api_key(ctx: RequestContext, account_id: str, key_id: str) -> bool:
    registry = _registry(ctx)
    try:
        return await registry.revoke_key(ctx.actor, account_id, key_id)
    except RegistryError as exc:
        raise _coded(exc) from None


def account_links(ref: AccountRef) -> list[SourceLinkView]:
    """Credentials redacted: a hint of at most their last 4 characters."""
    return [SourceLinkView(l.source, l.identity, l.hint) for l in links_of(ref.config)]


async def account_api_keys(ctx: RequestContext, ref: AccountRef) -> list[ApiKeyView]:
    """The store's keys of the account (the config file's keys are not listed)."""
    if ctx.ledger is not None:
        ctx.ledger.uncacheable = True   # lastUsedAt moves
    registry = ctx.state.registry_admin
    if registry is None or ctx.state.config.account(ref.id) is not None:
        return []
    return [ApiKeyView(k.key_id, k.label, k.created_at, k.last_used_at) for k in await registry.api_keys(ref.id)]
