"""Exact money: Decimal everywhere, JSON parsed without float loss, plain-notation output.

Every amount, price and value in the gateway is a `decimal.Decimal` (or an `int` of
base units). Upstream JSON floats are parsed straight into Decimal from their printed
digits, so `206.651753` stays `206.651753`, never `206.65175299999999`.
"""
from __future__ import annotations

import decimal
from decimal import Decimal
from typing import Any, Iterable

import msgspec

# uint256 has 78 digits; keep headroom for sums and quotients of such numbers.
PRECISION = 100
CONTEXT = decimal.Context(prec=PRECISION, rounding=decimal.ROUND_HALF_EVEN,
                          Emin=-999999, Emax=999999, traps=[decimal.InvalidOperation,
                                                            decimal.DivisionByZero,
                                                            decimal.Overflow])
# New threads and tasks inherit these, so arithmetic done with operators is also exact.
decimal.DefaultContext.prec = PRECISION
decimal.setcontext(CONTEXT.copy())

ZERO = Decimal(0)


# msgspec hands every JSON number with a fraction or an exponent to float_hook as its printed
# digits (`0.1000000000000000055511151231257827` stays exact; no float is ever built), reads
# integers of any size as int, and refuses what is not JSON (NaN, Infinity, lone surrogates,
# trailing data) with a DecodeError, a ValueError.
_DECODER = msgspec.json.Decoder(float_hook=Decimal)


def loads(text: str | bytes) -> Any:
    """Parse upstream JSON keeping every number's printed digits (floats become Decimal)."""
    return _DECODER.decode(text)


def to_decimal(value: Any) -> Decimal:
    """Decimal from a string, int or Decimal; a float is refused (it has already lost digits)."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool) or isinstance(value, float):
        raise TypeError("refusing to build money from a bool or float")
    elif isinstance(value, (int, str)):
        result = Decimal(value.strip() if isinstance(value, str) else value)
    else:
        raise TypeError(f"cannot make a Decimal from {type(value).__name__}")
    if not result.is_finite():
        raise ValueError("amount is not a finite number")
    return result


def dsum(values: Iterable[Decimal]) -> Decimal:
    total = ZERO
    for v in values:
        total = CONTEXT.add(total, v)
    return total


def mul(a: Decimal, b: Decimal) -> Decimal:
    return CONTEXT.multiply(a, b)


def div(a: Decimal, b: Decimal) -> Decimal:
    return CONTEXT.divide(a, b)


# A unit price is a quotient (value / amount) and rarely terminates: round it to 28
# significant digits, far beyond any price feed's precision. Values themselves stay exact.
UNIT_PRICE_CONTEXT = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN)


def unit_price(value: Decimal, amount: Decimal) -> Decimal:
    return UNIT_PRICE_CONTEXT.divide(value, amount)


def derived_value(amount: Decimal, unit: Decimal) -> Decimal:
    """amount x a (rounded) unit price: digits past the price's 28 would be noise, not money."""
    return UNIT_PRICE_CONTEXT.multiply(amount, unit)


def from_base_units(raw: int, decimals: int) -> Decimal:
    """Exact human amount of `raw` base units of a token with `decimals` decimals."""
    return Decimal(raw).scaleb(-decimals, CONTEXT)


def to_base_units(amount: Decimal, decimals: int) -> int | None:
    """Base units of `amount`, or None when `amount` has more digits than `decimals` allows."""
    scaled = amount.scaleb(decimals, CONTEXT)
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def plain(value: Decimal) -> str:
    """Plain notation, no exponent, no redundant trailing zeros: 1E-7 -> '0.0000001'."""
    if value.is_zero():
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
