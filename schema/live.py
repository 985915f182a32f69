"""The Subscription root: live balances (resolvers/live.py, gateway/live/)."""
from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Optional

import strawberry
from strawberry import Info

from resolvers import live, portfolio
from schema.enums import Source
from schema.scalars import DateTime
from schema.types import Account, Holding, ValueTotal


@strawberry.type(description="What changed in the caller's account since the previous event (the first event: "
                             "everything it holds now).")
class AccountChange:
    account: Account
    changed: list[Holding] = strawberry.field(description="Holdings new or different since the previous event.")
    removed_holding_ids: list[strawberry.ID]
    at: DateTime

    @strawberry.field(description="The account's total after this change.")
    def total_value(self, info: Info, currency: str = "USD") -> ValueTotal:
        return portfolio.account_total(info.context, self.account, currency, None)  # type: ignore[arg-type]


@strawberry.type
class Subscription:
    @strawberry.subscription(description="The caller's account: an event at once, then one whenever a holding is "
                                         "added, changed or removed. Polled every `intervalS` seconds (never more "
                                         "often than the gateway's [live] min_interval_s), once per upstream "
                                         "identity however many subscribers.")
    async def viewer_changed(self, info: Info, interval_s: Optional[int] = 30,
                             sources: Optional[list[Source]] = None) -> AsyncGenerator[AccountChange, None]:
        return live.viewer_changed(info.context, 30 if interval_s is None else interval_s, sources)  # type: ignore[return-value]
