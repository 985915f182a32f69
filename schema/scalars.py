"""Custom scalars: money as exact strings, base units as strings, ISO-8601 UTC times, CAIP ids."""
from __future__ import annotations

import decimal
import re
from datetime import datetime, timezone
from typing import Any, NewType

import strawberry
from graphql import GraphQLError

from gateway.domain.money import plain

_DECIMAL_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_CAIP2 = re.compile(r"^[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}$")
_CAIP19 = re.compile(r"^[-a-z0-9]{3,8}:[-_a-zA-Z0-9]{1,32}/[-a-z0-9]{3,8}:[-.%a-zA-Z0-9]{1,128}$")


def _bad(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})


def parse_decimal(value: Any) -> decimal.Decimal:
    # Strings only (and integers): a JSON float has already lost its digits on the way in.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _bad("Decimal must be a string such as \"12.5\"")
    text = str(value).strip()
    if not _DECIMAL_TEXT.match(text):
        raise _bad("Decimal must be a plain decimal number such as \"12.5\"")
    return decimal.Decimal(text)


def serialize_decimal(value: decimal.Decimal) -> str:
    return plain(value)


def parse_bigint(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not re.fullmatch(r"-?\d+", str(value)):
        raise _bad("BigInt must be an integer string such as \"1000000\"")
    return int(value)


def serialize_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def parse_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _bad("DateTime must be an ISO-8601 string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _bad("DateTime must be an ISO-8601 string") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _pattern_scalar(pattern: re.Pattern[str], what: str):
    def parse(value: Any) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            raise _bad(f"expected {what}")
        return value
    return parse


# The Python-side names the schema's annotations use; SCALAR_MAP says how each is (de)serialized.
Decimal = NewType("Decimal", decimal.Decimal)
BigInt = NewType("BigInt", int)
DateTime = NewType("DateTime", datetime)
ChainId = NewType("ChainId", str)
AssetType = NewType("AssetType", str)

_DECIMAL = strawberry.scalar(
    name="Decimal",
    description="Exact decimal number as a JSON string in plain notation (never an exponent, never a float).",
    serialize=serialize_decimal,
    parse_value=parse_decimal,
)
_DATETIME = strawberry.scalar(
    name="DateTime",
    description="ISO-8601 timestamp in UTC, e.g. 2025-09-26T14:17:39.584000Z.",
    serialize=serialize_datetime,
    parse_value=parse_datetime,
)

SCALAR_MAP = {
    Decimal: _DECIMAL,
    decimal.Decimal: _DECIMAL,
    DateTime: _DATETIME,
    datetime: _DATETIME,
    BigInt: strawberry.scalar(
        name="BigInt",
        description="Integer number of base units as a JSON string (uint256 safe).",
        serialize=str,
        parse_value=parse_bigint,
    ),
    ChainId: strawberry.scalar(
        name="ChainId",
        description="CAIP-2 chain id, e.g. eip155:8453.",
        serialize=str,
        parse_value=_pattern_scalar(_CAIP2, "a CAIP-2 chain id such as eip155:1"),
    ),
    AssetType: strawberry.scalar(
        name="AssetType",
        description="CAIP-19 asset type, e.g. eip155:8453/erc20:0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913.",
        serialize=str,
        parse_value=_pattern_scalar(_CAIP19, "a CAIP-19 asset type"),
    ),
}
