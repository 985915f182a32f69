"""GraphQL input types."""
from __future__ import annotations

from typing import Optional

import strawberry

from schema.enums import HoldingOrderField, OrderDirection, Source
from schema.scalars import ChainId, DateTime, Decimal


@strawberry.input(description="Which holdings to include. Testnets and zero balances are left out unless asked for.")
class HoldingFilter:
    sources: Optional[list[Source]] = None
    chain_ids: Optional[list[ChainId]] = None
    symbols: Optional[list[str]] = None
    asset_keys: Optional[list[str]] = None
    wallet_ids: Optional[list[strawberry.ID]] = None
    min_value: Optional[Decimal] = strawberry.field(
        default=None, description="Only holdings whose value (in its own currency) is at least this.")
    include_testnets: Optional[bool] = False
    include_zero: Optional[bool] = False
    providers: Optional[list[str]] = strawberry.field(
        default=None, description="Wallet providers, e.g. coinbase or ethereum (Calico crypto_source_id).")
    updated_after: Optional[DateTime] = strawberry.field(
        default=None, description="Only data fetched at or after this time (Calico start_time); "
                                  "holdings without a fetch time are left out.")
    updated_before: Optional[DateTime] = strawberry.field(
        default=None, description="Only data fetched at or before this time (Calico end_time).")


@strawberry.input
class HoldingOrder:
    field: HoldingOrderField = HoldingOrderField.VALUE
    direction: OrderDirection = OrderDirection.DESC
