"""What every source's `[sources.<key>]` section shares: where the upstream is and how its
calls are protected (the pipeline, gateway/upstream/pipeline.py, reads all of it).

A source adds its own fields by subclassing this in its folder
(gateway/sources/<name>/config.py).
"""
from __future__ import annotations

from pydantic import Field, field_validator

from gateway.support import config_checks as check
from gateway.support.strict_model import StrictModel


class SourceConfig(StrictModel):
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
        return check.http_url(v).rstrip("/")
