"""`[fx]`: the static rate table and the optional HTTP rate provider (docs/CONFIG.md [fx]).

`[fx.rates] "EUR/USD" = "1.0850"` means one EUR costs 1.0850 USD. Rates are Decimal strings:
a TOML float has already lost digits, so it is refused, like any non-positive or non-number.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, field_validator

from gateway.support.strict_model import StrictModel
from gateway.upstream.source_config import SourceConfig

CURRENCY = re.compile(r"^[A-Z0-9]{2,12}$")
_PAIR = re.compile(r"^([A-Za-z0-9]{2,12})/([A-Za-z0-9]{2,12})$")


def split_pair(text: str) -> tuple[str, str]:
    m = _PAIR.match(text)
    if not m:
        raise ValueError('a rate is named "BASE/QUOTE", e.g. "EUR/USD"')
    base, quote = m.group(1).upper(), m.group(2).upper()
    if base == quote:
        raise ValueError("a rate needs two different currencies")
    return base, quote


def _pair(text: str) -> str:
    base, quote = split_pair(text)
    return f"{base}/{quote}"


def parse_rate(text: str) -> Decimal:
    """A positive, finite decimal in plain or exponent notation ("1.0850")."""
    try:
        rate = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError('must be a decimal string such as "1.0850"') from None
    if not rate.is_finite() or rate <= 0:
        raise ValueError("must be a positive finite number")
    return rate


def _quoted(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError('must be a quoted decimal string such as "1.0850" (a TOML number has already lost digits)')
    return value


def _rate(text: str) -> str:
    parse_rate(text)
    return text.strip()


Pair = Annotated[str, AfterValidator(_pair)]
RateText = Annotated[str, BeforeValidator(_quoted), AfterValidator(_rate)]


class FxProviderConfig(SourceConfig):
    """An HTTP rate provider, called through the same protection as the sources (timeout,
    retries, breaker, concurrency: gateway/upstream/pipeline.py): `GET {base_url}/rates?
    base=USD&symbols=EUR,GBP` answering `{"base": "USD", "at": ISO-8601, "rates": {"EUR":
    "1.0850", ...}}` where each rate is what one unit of that currency costs in `base`."""
    base: str = "USD"
    # The currencies it is asked about: these (and the static table's) are the valid
    # `currency` arguments; anything else is refused before a call.
    currencies: list[str] = Field(min_length=1)
    refresh_every_s: float = Field(300.0, gt=0)   # quotes are fetched in the background this often
    max_quote_age_s: float = Field(86_400.0, gt=0)   # a quote older than this (provider failing) is dropped

    @field_validator("base")
    @classmethod
    def _base(cls, v: str) -> str:
        if not CURRENCY.match(v.upper()):
            raise ValueError("must be a currency code (USD)")
        return v.upper()

    @field_validator("currencies")
    @classmethod
    def _currencies(cls, v: list[str]) -> list[str]:
        out = [c.upper() for c in v]
        if not all(CURRENCY.match(c) for c in out):
            raise ValueError("each currency is 2-12 letters or digits (EUR)")
        return list(dict.fromkeys(out))


class FxConfig(StrictModel):
    rates: dict[Pair, RateText] = {}
    provider: FxProviderConfig | None = None

    @field_validator("rates")
    @classmethod
    def _one_per_pair(cls, v: dict[str, str]) -> dict[str, str]:
        for pair in v:
            base, quote = pair.split("/")
            if f"{quote}/{base}" in v:
                raise ValueError(f"both {pair} and {quote}/{base} are given: give one, the other is derived")
        return v
