"""The currency a total, position or history point is asked in: checked before anything is
read, and the rates that convert into it."""
from __future__ import annotations

from gateway.domain.errors import ClientCode
from gateway.fx.config import CURRENCY
from resolvers.context import RequestContext
from resolvers.errors import client_error


def checked_currency(ctx: RequestContext, currency: str) -> str:
    """`currency` upper-cased, when the gateway can value anything in it: a currency some
    source values in, or one a configured rate (or the rate provider) converts. Anything
    else is BAD_USER_INPUT here, before any upstream is called."""
    code = currency.strip().upper()
    if not CURRENCY.match(code):
        raise client_error(ClientCode.BAD_USER_INPUT, "`currency` must be a currency code such as USD or EUR", field="currency")
    if code not in ctx.state.currencies:
        raise client_error(ClientCode.BAD_USER_INPUT,
                           f"no source values in {code} and no exchange rate converts into it ([fx] in the config)",
                           field="currency")
    return code
