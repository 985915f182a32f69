"""Upstream bodies decoded straight into typed structs (SourceClient.decode, msgspec) keep money exact
and refuse what the parsed-dict path refused."""
from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from gateway.domain import money
from gateway.domain.errors import UpstreamError
from gateway.sources.base import SourceClient, UpstreamResponse
from gateway.sources.catalog import Source
from gateway.sources.dalp.client import BalancesPage
from gateway.sources.onebalance.client import AggregatedBalanceResponse

LONG = "0.1000000000000000055511151231257827"          # not a float's digits: float(LONG) == 0.1
WIDE = "123456789012345678901234567890.123456789012345678"   # a 30-digit integer part


def onebalance(fiat: str) -> bytes:
    return (b'{"accounts": {}, "balanceByAggregatedAsset": [{"aggregatedAssetId": "ob:eth", "balance": "5", '
            b'"individualAssetBalances": [{"assetType": "eip155:1/slip44:60", "balance": "5", "fiatValue": '
            + fiat.encode() + b'}], "fiatValue": ' + fiat.encode() + b'}], "totalBalance": {"fiatValue": '
            + fiat.encode() + b'}}')


def dalp(value: str) -> bytes:
    return (b'{"data": [{"id": "t", "value": ' + value.encode() + b', "frozen": "0", "available": "1", '
            b'"valueInBaseCurrency": null, "priceInBaseCurrencyReliable": true, "byWallet": null, '
            b'"token": {"id": "t", "symbol": "T", "decimals": 18}}], "meta": {"total": 1}}')


def ok(raw: bytes, status: int = 200) -> UpstreamResponse:
    return UpstreamResponse(status, None, raw=raw, source=Source.DALP)


@pytest.mark.parametrize("digits", [LONG, WIDE, "1E-7", "26488136306212020002"])
def test_json_numbers_keep_their_digits(digits):
    body = SourceClient.decode(ok(onebalance(digits)), AggregatedBalanceResponse)
    [entry] = body.balanceByAggregatedAsset
    assert entry.fiatValue == entry.individualAssetBalances[0].fiatValue == body.totalBalance.fiatValue
    assert isinstance(entry.fiatValue, Decimal) and str(entry.fiatValue) == str(Decimal(digits))
    assert money.loads(onebalance(digits))["totalBalance"]["fiatValue"] == Decimal(digits)   # the dict path too


def test_amount_strings_become_exact_decimals_and_numbers_are_refused():
    [row] = SourceClient.decode(ok(dalp(f'"{WIDE}"')), BalancesPage).data
    assert row.value == Decimal(WIDE) and row.by_wallet == [] and row.value_in_base_currency is None
    with pytest.raises(msgspec.ValidationError):
        SourceClient.decode(ok(dalp(WIDE)), BalancesPage)          # a JSON number where a string is documented
    with pytest.raises(ValueError):
        SourceClient.decode(ok(dalp('"-1"')), BalancesPage)        # DALP balances are never negative
    with pytest.raises(ValueError):
        SourceClient.decode(ok(dalp('"NaN"')), BalancesPage)


@pytest.mark.parametrize("raw", [b"<html>", b"", b'{"data": [', b'{"a": NaN}', b'"\\ud800"'])
def test_a_2xx_that_is_not_json_is_a_bad_response(raw):
    with pytest.raises(UpstreamError, match="DALP sent a body that is not JSON"):
        SourceClient.decode(ok(raw), BalancesPage)
    if raw:
        with pytest.raises(UpstreamError, match="not JSON"):
            ok(raw).body
    assert ok(raw, status=502).body is None   # an error status with a non-JSON body: just no body


def test_a_response_built_from_a_parsed_body_decodes_the_same():
    parsed = money.loads(onebalance(LONG))
    assert SourceClient.decode(UpstreamResponse(200, None, body=parsed), AggregatedBalanceResponse) == \
        SourceClient.decode(ok(onebalance(LONG)), AggregatedBalanceResponse)


def test_calico_floats_are_read_from_their_digits_and_bools_refused():
    from gateway.sources.calico.client import CalicoAssetsResponse
    raw = (b'{"data": [{"asset_symbol": "ETH", "asset_holdings": 0.01560091360042268, "price_in_usd": '
           + LONG.encode() + b', "crypto_source_id": "ethereum", "time_fetched": "2025-09-26T14:17:39.584Z"}], '
           b'"errors": []}')
    [row] = SourceClient.decode(ok(raw), CalicoAssetsResponse).data
    assert row.asset_holdings == Decimal("0.01560091360042268") and str(row.price_in_usd) == LONG
    with pytest.raises(msgspec.ValidationError):
        SourceClient.decode(ok(raw.replace(b"0.01560091360042268", b"true")), CalicoAssetsResponse)
