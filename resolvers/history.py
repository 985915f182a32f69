"""Account balance history (Cryptofuse), paged with gateway cursors. (Being written.)"""
from __future__ import annotations

from typing import Any

from gateway.errors import ClientCode
from resolvers.errors import client_error


async def account_history(ctx: Any, ref: Any, currency: str | None, type_: str | None,
                          first: int | None, after: str | None) -> Any:
    raise client_error(ClientCode.BAD_USER_INPUT, "balanceHistory is not available yet")
