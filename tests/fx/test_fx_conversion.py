"""Currency conversion: the [fx.rates] table in the config, exact conversion of totals and
positions with the rate on every converted figure, and unknown currencies refused before
any upstream call. Over real HTTP: simulators and gateway are uvicorn servers on loopback."""
from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterator

import pytest

from gateway.config import ConfigError, GatewayConfig, parse_config
from gateway.domain.records import Money
from gateway.fx.config import FxConfig
from gateway.fx.rates import FxTable, convert_sums
from gateway.server.app import create_app
from gateway.server.serving import ServerThread
from gateway.simulation.world import World
from gateway.sources.catalog import Source
from tests.conftest import GraphQLClient

KEY = "fxa-key"
TOTALS = """query($c: String!) { viewer {
  totalValue(currency: $c) { value { amount currency rate { pair base quote rate at source inverted }
                                     rates { pair inverted } } complete unpricedHoldings failedSources }
  positions(groupBy: SOURCE, currency: $c) { nodes { key value { amount currency rate { pair inverted } } } }
  holdings(first: 200) { nodes { source value { amount currency } } } } }"""


@contextlib.contextmanager
def fx_stack(fx: dict) -> Iterator[tuple[World, GraphQLClient]]:
    """An account whose every holding is priced: DALP rows in EUR, OneBalance rows in USD."""
    world = World.generate(0, demo=False)
    world.add_account("fxa", size=2, sources=[Source.DALP, Source.ONEBALANCE])
    with ServerThread(world.combined_app()) as sims:
        raw = world.config_dict(sims.url, fx=fx, cache={"enabled": False},
                                limits={"rate_limit_per_s": 10_000, "rate_limit_burst": 10_000})
        with ServerThread(create_app(GatewayConfig.model_validate(raw))) as gateway:
            yield world, GraphQLClient(gateway.url)


def _requests(world: World) -> int:
    return sum(c.requests for c in world.controls.values())


def _sums(nodes: list[dict]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for n in nodes:
        if n["value"]:
            out[n["value"]["currency"]] = out.get(n["value"]["currency"], Decimal(0)) + Decimal(n["value"]["amount"])
    return out


def test_a_usd_total_with_eur_holdings_is_complete_and_exact_with_a_rate():
    with fx_stack({"rates": {"EUR/USD": "1.0850"}}) as (_, client):
        body = client.query(TOTALS, {"c": "USD"}, key=KEY)
        assert "errors" not in body, body
        viewer = body["data"]["viewer"]
        sums = _sums(viewer["holdings"]["nodes"])
        assert set(sums) == {"EUR", "USD"}          # the account really mixes currencies
        total = viewer["totalValue"]
        assert total["complete"] is True and total["unpricedHoldings"] == 0
        expected = sums["USD"] + sums["EUR"] * Decimal("1.0850")   # exact: a product of decimals
        assert Decimal(total["value"]["amount"]) == expected
        assert total["value"]["currency"] == "USD"
        rate = total["value"]["rate"]
        assert rate["pair"] == "EUR/USD" and (rate["base"], rate["quote"]) == ("EUR", "USD")
        assert Decimal(rate["rate"]) == Decimal("1.0850") and rate["source"] == "config" and rate["inverted"] is False
        assert datetime.fromisoformat(rate["at"].replace("Z", "+00:00")) <= datetime.now(timezone.utc)
        # positions convert the same way: DALP's position is its EUR sum at the rate
        dalp = next(p for p in viewer["positions"]["nodes"] if p["key"] == "DALP")
        assert Decimal(dalp["value"]["amount"]) == sums["EUR"] * Decimal("1.0850")
        assert dalp["value"]["rate"]["pair"] == "EUR/USD"
        onebalance = next(p for p in viewer["positions"]["nodes"] if p["key"] == "ONEBALANCE")
        assert onebalance["value"]["rate"] is None and Decimal(onebalance["value"]["amount"]) == sums["USD"]


def test_the_inverse_direction_divides_and_says_so():
    with fx_stack({"rates": {"EUR/USD": "1.0850"}}) as (_, client):
        viewer = client.query(TOTALS, {"c": "eur"}, key=KEY)["data"]["viewer"]
        sums = _sums(viewer["holdings"]["nodes"])
        total = viewer["totalValue"]
        assert total["complete"] is True and total["value"]["currency"] == "EUR"
        converted = Decimal(total["value"]["amount"]) - sums["EUR"]
        # USD -> EUR is a quotient, rounded half-even to 28 significant digits
        import decimal
        assert converted == decimal.Context(prec=28).divide(sums["USD"], Decimal("1.0850"))
        assert total["value"]["rate"]["pair"] == "EUR/USD" and total["value"]["rate"]["inverted"] is True


def test_without_a_rate_the_usd_total_stays_incomplete():
    with fx_stack({}) as (_, client):
        viewer = client.query(TOTALS, {"c": "USD"}, key=KEY)["data"]["viewer"]
        sums = _sums(viewer["holdings"]["nodes"])
        total = viewer["totalValue"]
        eur_holdings = sum(1 for n in viewer["holdings"]["nodes"] if n["value"] and n["value"]["currency"] == "EUR")
        assert total["complete"] is False and total["unpricedHoldings"] == eur_holdings > 0
        assert Decimal(total["value"]["amount"]) == sums["USD"]
        assert total["value"]["rate"] is None and total["value"]["rates"] == []


@pytest.mark.parametrize("currency", ["XYZ", "GBP", "not a currency"])
def test_an_unknown_currency_is_bad_user_input_before_any_upstream_call(currency: str):
    with fx_stack({"rates": {"EUR/USD": "1.0850"}}) as (world, client):
        before = _requests(world)
        body = client.query('query($c: String!) { viewer { totalValue(currency: $c) { complete } } }',
                            {"c": currency}, key=KEY)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert body["errors"][0]["extensions"]["field"] == "currency"
        assert _requests(world) == before


def test_a_configured_rate_makes_its_currencies_known():
    with fx_stack({"rates": {"GBP/USD": "1.2700"}}) as (_, client):
        body = client.query('{ viewer { totalValue(currency: "GBP") { value { amount currency } complete } } }', key=KEY)
        assert "errors" not in body and body["data"]["viewer"]["totalValue"]["value"]["currency"] == "GBP"
        # EUR holdings have no EUR/GBP rate (no cross rates): incomplete, never guessed
        assert body["data"]["viewer"]["totalValue"]["complete"] is False


# -- the config table ------------------------------------------------------------------
@pytest.mark.parametrize("line, says", [
    ('"EUR/USD" = 1.085', 'fx.rates.EUR/USD: Value error, must be a quoted decimal string'),
    ('"EUR/USD" = "abc"', 'fx.rates.EUR/USD: Value error, must be a decimal string'),
    ('"EUR/USD" = "0"', 'fx.rates.EUR/USD: Value error, must be a positive finite number'),
    ('"EUR/USD" = "NaN"', 'fx.rates.EUR/USD: Value error, must be a positive finite number'),
    ('"EURUSD" = "1.1"', 'fx.rates.EURUSD.[key]: Value error, a rate is named "BASE/QUOTE"'),
    ('"EUR/EUR" = "1"', 'a rate needs two different currencies'),
    ('"EUR/USD" = "1.1"\n"USD/EUR" = "0.9"', 'fx.rates: Value error, both EUR/USD and USD/EUR are given'),
])
def test_bad_rates_are_one_line_config_errors_naming_the_field(line: str, says: str):
    with pytest.raises(ConfigError) as caught:
        parse_config("[fx.rates]\n" + line)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_rates_convert_exactly_and_sum_each_currency_once():
    table = FxTable.from_config(FxConfig(rates={"eur/usd": "1.0850"}))
    assert table.convert(Money(Decimal("100.10"), "EUR"), "USD").amount == Decimal("108.608500")
    back = table.convert(Money(Decimal("1"), "USD"), "EUR")
    assert back.amount == Decimal("0.9216589861751152073732718894") and back.rate.inverted
    assert table.convert(Money(Decimal("1"), "GBP"), "USD") is None
    same = Money(Decimal("5"), "USD")
    assert table.convert(same, "usd") is same
    amount, used, missing = convert_sums({"EUR": Decimal("2"), "USD": Decimal("1"), "JPY": Decimal("9")}, "USD", table.rate)
    assert amount == Decimal("3.17") and [r.pair for r in used] == ["EUR/USD"] and missing == ["JPY"]


def test_a_holding_in_another_currency_says_derived_and_carries_the_rate():
    query = """{ viewer { holdings(first: 200) { nodes { source value { amount currency } price { unit currency reliability }
        valueIn(currency: "USD") { amount currency rate { pair } }
        priceIn(currency: "USD") { unit currency reliability source rate { pair rate source } } } } } }"""
    with fx_stack({"rates": {"EUR/USD": "1.0850"}}) as (_, client):
        nodes = client.query(query, key=KEY)["data"]["viewer"]["holdings"]["nodes"]
        eur = [n for n in nodes if n["value"] and n["value"]["currency"] == "EUR"]
        usd = [n for n in nodes if n["value"] and n["value"]["currency"] == "USD"]
        assert eur and usd
        for n in eur:
            assert Decimal(n["valueIn"]["amount"]) == Decimal(n["value"]["amount"]) * Decimal("1.0850")
            assert n["valueIn"]["rate"] == {"pair": "EUR/USD"}
            assert n["priceIn"]["reliability"] == "DERIVED" and n["priceIn"]["source"] == "DALP"
            assert Decimal(n["priceIn"]["unit"]) == Decimal(n["price"]["unit"]) * Decimal("1.0850")
            assert n["priceIn"]["rate"] == {"pair": "EUR/USD", "rate": "1.085", "source": "config"}
        for n in usd:
            assert n["valueIn"]["amount"] == n["value"]["amount"] and n["valueIn"]["rate"] is None
            if n["price"]:
                assert n["priceIn"]["reliability"] == n["price"]["reliability"] and n["priceIn"]["rate"] is None
        gbp = client.query('{ viewer { holdings(first: 1) { nodes { valueIn(currency: "GBP") { amount } } } } }', key=KEY)
        assert gbp["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
