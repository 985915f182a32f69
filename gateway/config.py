"""The one TOML config file (docs/CONFIG.md).

`${VAR}` in any string is replaced from the environment before validation; a missing
variable is a startup error that names the variable, never a value. Secrets are
pydantic `SecretStr`, so a `repr` or a log of any config object shows `**********`.
"""
from __future__ import annotations

import functools
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from pydantic import Field, SecretStr, ValidationError, create_model, field_validator

from gateway.fx.config import FxConfig
from gateway.sources.catalog import SPECS, Source
from gateway.sources.spec import SourceSpec
from gateway.store.config import StoreConfig
from gateway.support.strict_model import StrictModel
from gateway.upstream.source_config import SourceConfig
from gateway.support import config_checks as check
from gateway.upstream.redis_client import check_redis_url, cluster_url_from_seeds

_VAR = re.compile(r"\$\{(file:[^}]+|[A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """Raised for an unusable config; the message never contains a secret value."""


_Model = StrictModel
_M = TypeVar("_M", bound=StrictModel)


def _with_source_blocks(block_of: Callable[[SourceSpec], type]) -> Callable[[type[_M]], type[_M]]:
    """The decorated model plus one optional field per source, named by its key, in the
    catalog's order (gateway/sources/catalog.py): adding a source adds its field."""
    def derive(model: type[_M]) -> type[_M]:
        blocks: dict[str, Any] = {spec.key: (block_of(spec) | None, None) for spec in SPECS}
        return create_model(model.__name__, __base__=model, __module__=model.__module__,  # type: ignore[call-overload]
                            __doc__=model.__doc__, **blocks)
    return derive


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    graphiql: bool = False          # the demo turns it on
    introspection: bool = False     # the demo turns it on
    # No response waits longer than this for upstreams: slower sources come back FAILED.
    request_deadline_s: float = Field(10.0, gt=0, le=300)
    cors_origins: list[str] = []    # exact origins allowed to call from a browser; none by default
    # Apollo-style CSRF prevention: a request needs a non-simple Content-Type or one of these headers.
    csrf_prevention: bool = True
    csrf_required_headers: list[str] = ["x-apollo-operation-name", "apollo-require-preflight",
                                        "authorization", "x-api-key"]
    # A request identical to one still running waits for that one's answer (gateway/policy/response_reuse.py).
    coalesce_identical: bool = True
    # Objects completed by selection plans compiled per document (schema/plans.py); off,
    # graphql-core completes every object itself (same answers, slower).
    compiled_plans: bool = True
    # Connections (gateway/server/connection_guard.py): a request's head and body must arrive within
    # these; an idle keep-alive connection is closed after keep_alive_timeout_s; beyond
    # max_connections open connections, new requests are answered 503.
    header_timeout_s: float = Field(10.0, gt=0, le=3600)
    body_timeout_s: float = Field(30.0, gt=0, le=3600)
    keep_alive_timeout_s: float = Field(5.0, gt=0, le=3600)
    max_connections: int = Field(1000, ge=1)
    max_header_bytes: int = Field(64 * 1024, ge=1024, le=1024 * 1024)

    _host = field_validator("host")(check.host)
    _origins = field_validator("cors_origins")(lambda v: [check.origin(o) for o in v])
    _headers = field_validator("csrf_required_headers")(lambda v: [check.header_name(h) for h in v])


class LimitsConfig(_Model):
    """Checked before anything is executed or any upstream is called."""
    max_depth: int = Field(12, ge=1)
    max_aliases: int = Field(30, ge=0)
    max_root_fields: int = Field(10, ge=1)
    max_tokens: int = Field(2_000, ge=10)
    max_body_bytes: int = Field(100_000, ge=1_000)
    # JSON nesting (objects and arrays) of the body and of GET `variables`/`extensions`,
    # checked before parsing (gateway/policy/json_depth.py)
    max_json_depth: int = Field(32, ge=4, le=256)
    max_cost: int = Field(200, ge=1)           # estimated upstream calls: accounts x sources x pages
    max_representations: int = Field(500, ge=1)   # federation `_entities` representations per operation
    # Token bucket per credential; what these defaults allow and stop: docs/CONFIG.md [limits].
    rate_limit_per_s: float = Field(50.0, gt=0)   # per account key or JWT subject: refill rate...
    rate_limit_burst: int = Field(300, ge=1)      # ...and bucket size
    admin_rate_limit_per_s: float = Field(500.0, gt=0)   # per admin key or admin JWT (an app backend)
    admin_rate_limit_burst: int = Field(3_000, ge=1)


class PersistedQueriesConfig(_Model):
    apq: bool = True                  # Automatic Persisted Queries (hash first, query on a miss)
    manifest: str | None = None       # Apollo persisted-query manifest (JSON) of known operations
    safelist_only: bool = False       # refuse every operation that is not in the manifest

    @field_validator("manifest")
    @classmethod
    def _manifest(cls, v: str | None) -> str | None:
        if v is not None:
            data = check.readable_json(v, "manifest")
            operations = data.get("operations", []) if isinstance(data, dict) else None
            if not isinstance(operations, list) or not all(
                    isinstance(op, dict) and isinstance(op.get("body"), str) for op in operations):
                raise ValueError('the manifest must be {"operations": [{"id": ..., "body": "query ..."}]}')
        return v


class JwtConfig(_Model):
    hs256_secret: SecretStr | None = None
    jwks_file: str | None = None      # RS256 / ES256 public keys
    issuer: str | None = None
    audience: str | None = None
    account_claim: str = "sub"
    admin_claim: str | None = None    # e.g. "role": admin when it holds admin_value
    admin_value: str = "admin"
    leeway_s: float = Field(30.0, ge=0)

    def model_post_init(self, _: Any) -> None:
        if (self.hs256_secret is None) == (self.jwks_file is None):
            raise ValueError("jwt needs exactly one of hs256_secret or jwks_file")

    @field_validator("jwks_file")
    @classmethod
    def _jwks(cls, v: str | None) -> str | None:
        if v is not None:
            import jwt
            try:
                jwt.PyJWKSet.from_dict(check.readable_json(v, "JWKS file"))
            except (jwt.PyJWTError, KeyError, TypeError, AttributeError):
                raise ValueError("the JWKS file holds no usable key set") from None
        return v


class CacheConfig(_Model):
    enabled: bool = True
    # shared by every gateway process; in-memory LRU when absent. redis:// or rediss:// is one
    # server; redis+cluster://host:port (or a list of seed nodes) a Redis Cluster.
    redis_url: SecretStr | None = None
    max_entries: int = Field(10_000, ge=1)
    # whole responses reused while the reads behind them are unchanged (gateway/policy/kept_responses.py)
    responses: bool = True
    responses_max_bytes: int = Field(64 * 1024 * 1024, ge=0)

    @field_validator("redis_url", mode="before")
    @classmethod
    def _seed_list(cls, v: Any) -> Any:
        if isinstance(v, list) and all(isinstance(s, str) for s in v):
            return cluster_url_from_seeds(v)
        return v

    @field_validator("redis_url")
    @classmethod
    def _usable_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            check_redis_url(v.get_secret_value())
        return v


class LiveConfig(_Model):
    """Subscriptions (Subscription.viewerChanged) and @defer (gateway/live/)."""
    # The floor under any subscriber's `intervalS`: the fastest an upstream identity is polled.
    min_interval_s: float = Field(10.0, gt=0, le=86_400)
    max_subscriptions_per_key: int = Field(20, ge=1)   # open subscriptions per key (MAX_SUBSCRIPTIONS)
    keep_alive_s: float = Field(15.0, gt=0, le=3600)    # graphql-transport-ws pings to an idle connection
    # @defer on fragments (strawberry's experimental incremental execution; graphql-core's path).
    defer: bool = True


class ObservabilityConfig(_Model):
    """/metrics and optional OpenTelemetry tracing (gateway/observability/metrics.py, gateway/observability/tracing.py)."""
    metrics: bool = True                  # serve Prometheus metrics at /metrics
    otlp_endpoint: str | None = None      # OTLP/HTTP collector base URL; or OTEL_EXPORTER_OTLP_ENDPOINT
    service_name: str = "balance-gateway"

    _otlp = field_validator("otlp_endpoint")(lambda v: v if v is None else check.http_url(v))


class HistoryConfig(_Model):
    """`[history]`: snapshots of each account's valued holdings (gateway/history/, docs/HISTORY.md)."""
    enabled: bool = True                  # with a [store]; without one there is no history
    snapshot_every_s: float = Field(3600.0, ge=0)   # at most one snapshot per account per period, when read
    refresh_every_s: float | None = Field(None, gt=0)   # background snapshots of every account; off by default
    # Retention and downsampling: every snapshot for raw_for_hours, then the last of each hour
    # until hourly_for_days, then the last of each UTC day for daily_for_days (0: forever).
    raw_for_hours: float = Field(24.0, ge=0)
    hourly_for_days: float = Field(30.0, ge=0)
    daily_for_days: float = Field(0.0, ge=0)
    compact_every_s: float = Field(3600.0, gt=0)
    max_pending_writes: int = Field(1000, ge=1)   # snapshots waiting to be written; beyond, one is dropped (logged)
    max_points: int = Field(10_000, ge=1, le=100_000)   # valueHistory points per call


@_with_source_blocks(lambda spec: spec.source_config)
class SourcesConfig(_Model):
    """`[sources.<key>]`: one optional section per source."""

    def get(self, source: Source) -> SourceConfig | None:
        return getattr(self, source.key)


@_with_source_blocks(lambda spec: spec.account_config)   # `calico = { token = ... }`, ...
class AccountConfig(_Model):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-@]+$")
    api_keys: list[SecretStr] = []      # plain (from ${ENV} or ${file:...}) or "sha256:<hex>" digests

    def source(self, source: Source) -> Any:
        return getattr(self, source.key)


class AuthConfig(_Model):
    admin_keys: list[SecretStr] = []    # keys that may read every account ("sha256:<hex>" digests too)
    jwt: JwtConfig | None = None


class GatewayConfig(_Model):
    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    cache: CacheConfig = CacheConfig()
    limits: LimitsConfig = LimitsConfig()
    persisted_queries: PersistedQueriesConfig = PersistedQueriesConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    live: LiveConfig = LiveConfig()
    sources: SourcesConfig = SourcesConfig()
    accounts: list[AccountConfig] = []
    store: StoreConfig | None = None   # accounts (and history) in a database (gateway/store/)
    registry: dict[str, Any] = {}   # extra chains/assets/tokens, same shape as the data files
    fx: FxConfig = FxConfig()               # exchange rates (gateway/fx/)
    history: HistoryConfig = HistoryConfig()   # value history snapshots (gateway/history/)
    demo: bool = False              # set by the embedded demo only

    def model_post_init(self, _: Any) -> None:
        if self.registry:
            from gateway.domain.tokens import TokenRegistry
            try:
                TokenRegistry.default(self.registry)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"[registry] entry is incomplete or malformed ({type(exc).__name__}: {exc})") from None
        for key in [k for a in self.accounts for k in a.api_keys] + list(self.auth.admin_keys):
            text = key.get_secret_value()
            if text.startswith("sha256:") and not re.fullmatch(r"sha256:[0-9a-fA-F]{64}", text):
                raise ValueError("a sha256: key must be 64 hex digits")
        ids = [a.id for a in self.accounts]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate account id(s): {', '.join(dupes)}")
        for account in self.accounts:
            blocks = [(source, block) for source in Source if (block := account.source(source)) is not None]
            for source, _ in blocks:
                if self.sources.get(source) is None:
                    raise ValueError(f"account {account.id!r} uses {source.key} but [sources.{source.key}] is missing")
            for source, block in blocks:   # what one source's block needs of its section
                problem = block.problem_with(self.sources.get(source))
                if problem:
                    raise ValueError(f"account {account.id!r} {problem}")

    def account(self, account_id: str) -> AccountConfig | None:
        return self._accounts_by_id.get(account_id)

    @functools.cached_property
    def _accounts_by_id(self) -> dict[str, AccountConfig]:
        # Asked on every request; the config is frozen, so the index never goes stale.
        return {a.id: a for a in self.accounts}   # ids are unique (checked above)


def substitute_env(value: Any, env: Mapping[str, str]) -> Any:
    """Replace `${VAR}` in every string of a parsed TOML document."""
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("file:"):   # a secret mounted as a file (Docker/Kubernetes secrets)
                path = name[5:]
                try:
                    return Path(path).read_text().strip()
                except OSError as exc:
                    raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from None
            if name not in env:
                raise ConfigError(f"environment variable {name} is not set (referenced in the config)")
            return env[name]
        return _VAR.sub(repl, value)
    if isinstance(value, list):
        return [substitute_env(v, env) for v in value]
    if isinstance(value, dict):
        return {k: substitute_env(v, env) for k, v in value.items()}
    return value


def missing_variables(text: str, env: Mapping[str, str] | None = None) -> list[str]:
    """Every `${VAR}` the file uses that the environment lacks (names only, in file order)."""
    env = os.environ if env is None else env
    names = [m.group(1) for m in _VAR.finditer(text) if not m.group(1).startswith("file:")]
    return list(dict.fromkeys(n for n in names if n not in env))


def parse_config(text: str, env: Mapping[str, str] | None = None) -> GatewayConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config is not valid TOML: {exc}") from None
    if "demo" in raw:
        raise ConfigError("`demo` is not a config option (run without a config for the demo)")
    raw = substitute_env(raw, os.environ if env is None else env)
    try:
        return GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        # Report where and what, never the offending input (it may be a secret).
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
                             for e in exc.errors(include_input=False, include_url=False))
        raise ConfigError(f"invalid config: {problems}") from None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> GatewayConfig:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    return parse_config(text, env)
