"""GraphQL enums. The domain enums live in gateway.domain.records (Source in
gateway.sources.catalog, built from the sources' specs); these expose them unchanged."""
from __future__ import annotations

from enum import Enum

import strawberry

from gateway.domain import records
from gateway.sources import catalog
from gateway.upstream import resilience

Source = strawberry.enum(catalog.Source, name="Source")
WalletKind = strawberry.enum(records.WalletKind, name="WalletKind")
AmountPrecision = strawberry.enum(records.AmountPrecision, name="AmountPrecision")
PriceReliability = strawberry.enum(records.PriceReliability, name="PriceReliability")
SourceState = strawberry.enum(records.SourceState, name="SourceState")


@strawberry.enum
class HoldingOrderField(Enum):
    VALUE = "VALUE"
    AMOUNT = "AMOUNT"
    SYMBOL = "SYMBOL"


@strawberry.enum
class OrderDirection(Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.enum
class PositionGrouping(Enum):
    ASSET = "ASSET"
    TOKEN = "TOKEN"
    CHAIN = "CHAIN"
    SOURCE = "SOURCE"
    WALLET = "WALLET"

BreakerState = strawberry.enum(
    resilience.BreakerState, name="BreakerState",
    description="CLOSED: calls flow; OPEN: failing, skipped until a cool-down; HALF_OPEN: one probe decides.")


@strawberry.enum(description="The spacing of valueHistory's points (UTC; weeks start on Monday).")
class HistoryInterval(Enum):
    HOUR = "HOUR"
    DAY = "DAY"
    WEEK = "WEEK"
