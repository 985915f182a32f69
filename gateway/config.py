"""The one TOML config file (docs/CONFIG.md).

`${VAR}` in any string is replaced from the environment before validation; a missing
variable is a startup error that names the variable, never a value. Secrets are
pydantic `SecretStr`, so a `repr` or a log of any config object shows `**********`.
"""
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from gateway.domain.records import Source
from gateway.upstream.redis_client import check_redis_url, cluster_url_from_seeds

_VAR = re.compile(r"\$\{(file:[^}]+|[A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """Raised for an unusable config; the message never contains a secret value."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    # A request identical to one still running waits for that one's answer (gateway/reuse.py).
    coalesce_identical: bool = True
    # Objects completed by selection plans compiled per document (schema/plans.py); off,
    # graphql-core completes every object itself (same answers, slower).
    compiled_plans: bool = True


class LimitsConfig(_Model):
    """Checked before anything is executed or any upstream is called."""
    max_depth: int = Field(12, ge=1)
    max_aliases: int = Field(30, ge=0)
    max_root_fields: int = Field(10, ge=1)
    max_tokens: int = Field(2_000, ge=10)
    max_body_bytes: int = Field(100_000, ge=1_000)
    max_cost: int = Field(200, ge=1)           # estimated upstream calls: accounts x sources x pages
    # Token bucket per credential; what these defaults allow and stop: docs/CONFIG.md [limits].
    rate_limit_per_s: float = Field(50.0, gt=0)   # per account key or JWT subject: refill rate...
    rate_limit_burst: int = Field(300, ge=1)      # ...and bucket size
    admin_rate_limit_per_s: float = Field(500.0, gt=0)   # per admin key or admin JWT (an app backend)
    admin_rate_limit_burst: int = Field(3_000, ge=1)


class PersistedQueriesConfig(_Model):
    apq: bool = True                  # Automatic Persisted Queries (hash first, query on a miss)
    manifest: str | None = None       # Apollo persisted-query manifest (JSON) of known operations
    safelist_only: bool = False       # refuse every operation that is not in the manifest


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


class ObservabilityConfig(_Model):
    """/metrics and optional OpenTelemetry tracing (gateway/metrics.py, gateway/tracing.py)."""
    metrics: bool = True                  # serve Prometheus metrics at /metrics
    otlp_endpoint: str | None = None      # OTLP/HTTP collector base URL; or OTEL_EXPORTER_OTLP_ENDPOINT
    service_name: str = "balance-gateway"


class SourceConfig(_Model):
    base_url: str
    timeout_s: float = Field(5.0, gt=0, le=120)          # one upstream HTTP call
    # caching of upstream responses (per source, identity and parameters)
    cache_ttl_s: float = Field(30.0, ge=0)               # fresh for this long
    max_stale_s: float = Field(300.0, ge=0)              # then served only when the upstream fails
    refresh_min_interval_s: float = Field(10.0, ge=0)    # a client refresh at most this often per response
    # protecting the upstream
    max_concurrency: int | None = Field(16, ge=1)        # calls in flight to this source, process-wide
    max_retries: int = Field(2, ge=0, le=10)             # on connection errors, 429, 502, 503, 504
    retry_budget_ratio: float = Field(0.2, ge=0, le=1)   # retries at most this share of calls (+1/s)
    breaker_failures: int = Field(5, ge=1)               # consecutive failures that open the circuit
    breaker_cooldown_s: float = Field(30.0, gt=0)        # before one probe call is let through
    max_response_bytes: int = Field(16 * 1024 * 1024, ge=1024)

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        return v.rstrip("/")


class CalicoSourceConfig(SourceConfig):
    base_url: str = "https://api.getcalico.com/platform/v1"


class CryptofuseSourceConfig(SourceConfig):
    pass


class OneBalanceSourceConfig(SourceConfig):
    base_url: str = "https://be.onebalance.io/api"
    api_key: SecretStr
    aggregated_asset_ids: list[str] = ["ob:eth", "ob:usdc", "ob:usdt"]
    asset_ids: list[str] = []       # extra CAIP-19 ids (`assetId=`)


class CoboSourceConfig(SourceConfig):
    api_key: SecretStr


class DalpSourceConfig(SourceConfig):
    api_key: SecretStr | None = None   # used with an account's `wallet` override
    chain_id: str = "eip155:1"
    base_currency: str = "USD"


class SourcesConfig(_Model):
    calico: CalicoSourceConfig | None = None
    cryptofuse: CryptofuseSourceConfig | None = None
    onebalance: OneBalanceSourceConfig | None = None
    cobo: CoboSourceConfig | None = None
    dalp: DalpSourceConfig | None = None

    def get(self, source: Source) -> SourceConfig | None:
        return getattr(self, source.key)


class CalicoAccount(_Model):
    token: SecretStr


class CryptofuseAccount(_Model):
    token: SecretStr


class OneBalanceAccount(_Model):
    accounts: list[str] = Field(min_length=1)   # CAIP-10 ids

    @field_validator("accounts")
    @classmethod
    def _caip10(cls, v: list[str]) -> list[str]:
        for item in v:
            if item.count(":") < 2:
                raise ValueError("each OneBalance account must be CAIP-10 (namespace:reference:address)")
        return v


class CoboAccount(_Model):
    wallet_uuids: list[str] = Field(min_length=1)


class DalpAccount(_Model):
    api_key: SecretStr | None = None            # the participant's own key
    wallet: str | None = None                   # or: filter[wallet] with the source-level key

    def model_post_init(self, _: Any) -> None:
        if (self.api_key is None) == (self.wallet is None):
            raise ValueError("dalp needs exactly one of api_key or wallet")


class AccountConfig(_Model):
    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-@]+$")
    api_keys: list[SecretStr] = []      # plain (from ${ENV} or ${file:...}) or "sha256:<hex>" digests
    calico: CalicoAccount | None = None
    cryptofuse: CryptofuseAccount | None = None
    onebalance: OneBalanceAccount | None = None
    cobo: CoboAccount | None = None
    dalp: DalpAccount | None = None

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
    sources: SourcesConfig = SourcesConfig()
    accounts: list[AccountConfig] = []
    registry: dict[str, Any] = {}   # extra chains/assets/tokens, same shape as the data files
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
            for source in Source:
                if account.source(source) is not None and self.sources.get(source) is None:
                    raise ValueError(f"account {account.id!r} uses {source.key} but [sources.{source.key}] is missing")
            if account.dalp and account.dalp.wallet and not (self.sources.dalp and self.sources.dalp.api_key):
                raise ValueError(f"account {account.id!r} uses dalp.wallet, which needs [sources.dalp] api_key")

    def account(self, account_id: str) -> AccountConfig | None:
        return next((a for a in self.accounts if a.id == account_id), None)


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
