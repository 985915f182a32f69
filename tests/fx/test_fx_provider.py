"""The HTTP rate provider ([fx.provider]) against its simulator, over real HTTP: quotes read
at startup and in the background, on every converted figure with their time and source;
a failing provider never fails a request and never leaks its body; currencies outside the
configured ones are refused without calling anything."""
from __future__ import annotations

import contextlib
import logging
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterator

from gateway.config import GatewayConfig
from gateway.fx import simulator as fx_sim
from gateway.server.app import create_app
from gateway.server.serving import ServerThread
from gateway.simulation.control import Fault, SimControl
from gateway.simulation.world import World
from gateway.sources.catalog import Source
from tests.conftest import GraphQLClient

KEY = "fxa-key"
TOTAL = """query($c: String!) { viewer { totalValue(currency: $c) {
  value { amount currency rate { pair rate at source inverted } } complete unpricedHoldings }
  holdings(first: 200) { nodes { value { amount currency } } } } }"""


@contextlib.contextmanager
def provider_stack(rates: fx_sim.Rates, control: SimControl, **provider: object) -> Iterator[tuple[World, GraphQLClient]]:
    world = World.generate(0, demo=False)
    world.add_account("fxa", size=2, sources=[Source.DALP, Source.ONEBALANCE])
    with ServerThread(world.combined_app()) as sims, ServerThread(fx_sim.create_app(rates, control)) as fx:
        raw = world.config_dict(sims.url, cache={"enabled": False},
                                fx={"provider": {"base_url": fx.url, "currencies": ["EUR", "GBP"],
                                                 "max_retries": 0, "timeout_s": 1.0, **provider}},
                                limits={"rate_limit_per_s": 10_000, "rate_limit_burst": 10_000})
        with ServerThread(create_app(GatewayConfig.model_validate(raw))) as gateway:
            yield world, GraphQLClient(gateway.url)


def _sums(viewer: dict) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for n in viewer["holdings"]["nodes"]:
        if n["value"]:
            out[n["value"]["currency"]] = out.get(n["value"]["currency"], Decimal(0)) + Decimal(n["value"]["amount"])
    return out


def test_provider_quotes_convert_with_their_time_and_source():
    quoted_at = datetime(2026, 11, 30, 16, 0, tzinfo=timezone.utc)
    rates = fx_sim.Rates(quotes={"EUR": Decimal("1.0912"), "GBP": Decimal("1.25")}, at=quoted_at)
    control = SimControl()
    with provider_stack(rates, control) as (_, client):
        viewer = client.query(TOTAL, {"c": "USD"}, key=KEY)["data"]["viewer"]
        sums = _sums(viewer)
        total = viewer["totalValue"]
        assert total["complete"] is True
        assert Decimal(total["value"]["amount"]) == sums["USD"] + sums["EUR"] * Decimal("1.0912")
        assert total["value"]["rate"] == {"pair": "EUR/USD", "rate": "1.0912", "at": "2026-11-30T16:00:00Z",
                                          "source": "provider", "inverted": False}
        calls = control.requests
        assert calls == 1   # read once at startup, not per request
        client.query(TOTAL, {"c": "USD"}, key=KEY)
        assert control.requests == calls


def test_quotes_are_refreshed_in_the_background():
    rates = fx_sim.Rates(quotes={"EUR": Decimal("1.0850")})
    with provider_stack(rates, SimControl(), refresh_every_s=0.1, cache_ttl_s=0) as (_, client):
        first = client.query(TOTAL, {"c": "USD"}, key=KEY)["data"]["viewer"]["totalValue"]["value"]["rate"]
        rates.quotes["EUR"], rates.at = Decimal("1.2"), datetime.now(timezone.utc)
        deadline = time.monotonic() + 10
        while True:
            now = client.query(TOTAL, {"c": "USD"}, key=KEY)["data"]["viewer"]["totalValue"]["value"]["rate"]
            if now["rate"] == "1.2":
                break
            assert time.monotonic() < deadline, "the quote was never refreshed"
            time.sleep(0.05)
        assert first["rate"] == "1.085" and now["at"] > first["at"]


def test_a_failing_provider_leaves_totals_incomplete_and_its_body_unlogged(caplog):
    control = SimControl()
    control.add_fault(Fault(kind="status", status=500, message="secret provider body"))
    with caplog.at_level(logging.WARNING, logger="gateway.fx"):
        with provider_stack(fx_sim.Rates(), control) as (_, client):
            body = client.query(TOTAL, {"c": "USD"}, key=KEY)
            assert "errors" not in body
            total = body["data"]["viewer"]["totalValue"]
            assert total["complete"] is False and total["value"]["rate"] is None and total["unpricedHoldings"] > 0
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.fx"]
    assert lines and all("secret provider body" not in line for line in lines)


def test_currencies_outside_the_configured_ones_are_refused_without_a_call():
    control = SimControl()
    with provider_stack(fx_sim.Rates(), control) as (world, client):
        before = control.requests, sum(c.requests for c in world.controls.values())
        body = client.query(TOTAL, {"c": "CHF"}, key=KEY)   # the provider knows CHF; the config does not ask it
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert (control.requests, sum(c.requests for c in world.controls.values())) == before
        ok = client.query(TOTAL, {"c": "GBP"}, key=KEY)["data"]["viewer"]["totalValue"]
        assert ok["value"]["currency"] == "GBP"
