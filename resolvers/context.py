"""Long-lived gateway state and the per-request context built from it."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

from gateway.upstream.response_cache import InFlight
from gateway.config import AccountConfig, GatewayConfig
from gateway.domain.records import SourceFetch, Token
from gateway.sources.catalog import Source
from gateway.domain.tokens import TokenRegistry
from gateway.upstream.resilience import Deadline
from gateway.upstream.ledger import ReadLedger
from gateway.upstream.pipeline import FetchOptions
from gateway.sources.base import SourceClient
from gateway.fx.rates import FxTable
from resolvers.loaders import Loaders
from resolvers.valuation import ValuedAccounts


ADMIN = "\x00admin"  # key_index marker: not a valid account id


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def configured_digest(key: str) -> bytes:
    """A configured key: `sha256:<hex>` is already a digest (the key itself stays off disk)."""
    if key.startswith("sha256:"):
        return bytes.fromhex(key[7:])
    return key_digest(key)


@dataclass
class GatewayState:
    """What lives for the whole process: config, registry, upstream clients, the key index."""
    config: GatewayConfig
    registry: TokenRegistry
    clients: dict[Source, SourceClient]
    cache: Any = None
    # sha256(key) -> account id. Looking up a digest leaks nothing usable about the key,
    # and avoids comparing the presented key with every configured one.
    key_index: dict[bytes, str] = field(default_factory=dict)
    valued: ValuedAccounts = field(default_factory=ValuedAccounts)   # accounts' valued holdings, per set of reads
    account_reads: InFlight = field(default_factory=InFlight)   # whole accounts being read (accounts.fetch_account)
    # the account registry, with [store] url set (gateway/accounts/): its in-memory accounts
    # and keys (an AccountDirectory), and the admin operations (a Registry)
    directory: Any = None
    registry_admin: Any = None
    fx: FxTable = field(default_factory=FxTable)    # exchange rates ([fx])
    history: Any = None                               # gateway.history.service.History, with a [store] and [history]
    live: Any = None    # gateway.live.hub.LiveHub: subscriptions' shared pollers (set by create_app)

    def __post_init__(self) -> None:
        for account in self.config.accounts:
            for key in account.api_keys:
                self.key_index[configured_digest(key.get_secret_value())] = account.id
        for key in self.config.auth.admin_keys:
            self.key_index[configured_digest(key.get_secret_value())] = ADMIN

    def account(self, account_id: str) -> AccountConfig | None:
        """The config file's account of that id, else the registry's (memory only)."""
        found = self.config.account(account_id)   # the file wins over a registry account of one id
        if found is None and self.directory is not None:
            found = self.directory.account(account_id)
        return found

    def key_owner(self, digest: bytes) -> str | None:
        """Whose key has this SHA-256 digest: an account id, ADMIN, or None."""
        owner = self.key_index.get(digest)
        if owner is None and self.directory is not None:
            owner = self.directory.owner_of(digest)
            if owner is not None and self.config.account(owner) is not None:
                return None   # a config account of the same id, added later, takes no registry key
        return owner

    @property
    def currencies(self) -> set[str]:
        """Currencies anything can be valued in: USD (Calico's and OneBalance's values), each
        source's own base currency (DALP's `base_currency`), and those the rates convert."""
        native = {"USD"}
        for source in self.clients:
            base = getattr(self.config.sources.get(source), "base_currency", None)
            if base:
                native.add(base.upper())
        return native | self.fx.currencies()


@dataclass
class UpstreamProblem:
    account_id: str
    source: Source
    code: str
    message: str


@dataclass
class RequestContext:
    """One GraphQL request: who is asking, the loaders, and what went wrong upstream."""
    state: GatewayState
    caller: AccountConfig | None
    loaders: Loaders | None
    is_admin: bool = False
    request_id: str = ""
    actor: str = ""      # the caller's non-secret credential id, for the registry's audit
    # (account, source) -> problem; each failed source is reported once per request
    upstream_problems: dict[tuple[str, Source], UpstreamProblem] = field(default_factory=dict)
    # errors tied to a path that resolvers chose to report without failing the field
    extra_errors: list[Any] = field(default_factory=list)
    identities: dict[tuple[str, Source], list[Any]] = field(default_factory=dict)
    seen_tokens: dict[str, Token] = field(default_factory=dict)
    views: dict[str, Any] = field(default_factory=dict)   # account id -> future of its AccountView
    deadline: Deadline = field(default_factory=Deadline.none)
    # per account: maxAge/refresh asked on viewer/account/accounts (first ask wins)
    fetch_options: dict[str, FetchOptions] = field(default_factory=dict)
    ledger: ReadLedger | None = None    # what this request read (the gate's; none outside HTTP)
    deferred: bool = False              # the operation uses @defer (engine/operation_limits.py sets it)
    client_id: str = ""                 # the credential's rate-limit id (per-key subscription cap)
    connection_params: Any = None       # graphql-transport-ws connection_init payload (strawberry sets it)
    # Subscriptions: whether the credential still authenticates (asked before each event).
    still_authorized: Callable[[], bool] | None = None

    def ask(self, account_id: str, max_age_s: float | None, refresh: bool) -> None:
        if (max_age_s is not None or refresh) and account_id not in self.fetch_options:
            self.fetch_options[account_id] = FetchOptions(deadline=self.deadline, max_age_s=max_age_s,
                                                          refresh=refresh, ledger=self.ledger)

    @property
    def default_options(self) -> FetchOptions:
        return FetchOptions(deadline=self.deadline, ledger=self.ledger)

    def options_for(self, account_id: str) -> FetchOptions:
        """What this request asks of the reads of one account."""
        return self.fetch_options.get(account_id) or self.default_options

    @property
    def registry(self) -> TokenRegistry:
        return self.state.registry

    def note_failures(self, fetches: list[SourceFetch]) -> None:
        for f in fetches:
            if f.error is not None:
                self.upstream_problems.setdefault(
                    (f.account_id, f.source), UpstreamProblem(f.account_id, f.source, f.error.code, f.error.message))
