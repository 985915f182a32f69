"""What is kept with a set of valued holdings (resolvers/derived.py) is what computing it
again would give, for every filter, order and grouping; it is computed once per key; and a
client varying its filters cannot grow it past its bound."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers import derived as derived_module
from resolvers.derived import Derived
from resolvers.holdings import (HoldingSelection, currency_sums, order, ordered, select, selected, selected_sums,
                                value_total)
from resolvers.positions import _KEYS, group, grouped
from resolvers.valuation import derive_values
from tests.resolvers.test_positions import REGISTRY, holdings

OWNER = ("account", "acct")
FILTERS = [HoldingSelection(), HoldingSelection(include_zero=True, include_testnets=True),
           HoldingSelection(min_value=Decimal("1000")), HoldingSelection(symbols=["eth", "USDC"])]


@settings(max_examples=25, deadline=None)
@given(holdings(max_size=120), st.sampled_from(FILTERS), st.sampled_from(["VALUE", "SYMBOL", "AMOUNT"]),
       st.sampled_from(["ASC", "DESC"]), st.sampled_from(["ASSET", "TOKEN", "CHAIN", "SOURCE", "WALLET"]),
       st.sampled_from(["USD", "EUR"]))
def test_kept_results_equal_computing_them_again(portfolio, f, field, direction, grouping, currency):
    valued = derive_values(portfolio)
    kept = Derived()
    for _ in range(2):   # computed, then found
        assert ordered(kept, OWNER, valued, f, field, direction) == order(select(valued, f), field, direction)
        chosen = selected(kept, OWNER, valued, f)
        assert chosen == select(valued, f)
        assert value_total(chosen, currency, [], sums=selected_sums(kept, OWNER, valued, f)) == \
            value_total(select(valued, f), currency, [])
        total = value_total(chosen, currency, []).value.amount
        groups = grouped(kept, OWNER, valued, f, grouping)
        positions = group(chosen, grouping, currency, total, REGISTRY, groups=groups)
        assert positions == group(select(valued, f), grouping, currency, total, REGISTRY)
        for p in positions:   # each position's members: its own, in the listing's order, amounts added up
            members = [h for h in chosen if _KEYS[grouping](h) == p.key]
            assert p.holdings == order(members)
            if grouping in ("ASSET", "TOKEN") and not any(h.base_units for h in members):
                assert p.amount == sum((h.amount for h in members), Decimal(0))
    assert selected(kept, OWNER, valued, f) is chosen                 # the kept list, not a new one
    assert selected(kept, ("wallet", "w1"), valued[:1], f) == select(valued[:1], f)   # another owner, its own entry
    assert currency_sums(chosen).priced == sum(1 for h in chosen if h.value is not None)


def test_computed_once_per_key_and_bounded(monkeypatch):
    monkeypatch.setattr(derived_module, "MAX_ENTRIES", 3)
    kept, calls = Derived(), []

    def compute(n):
        calls.append(n)
        return [n]
    assert kept.get("a", lambda: compute(1)) == [1] and kept.get("a", lambda: compute(2)) == [1]
    for key in "bcdef":
        kept.get(key, lambda: compute(key))
    assert calls == [1, "b", "c", "d", "e", "f"] and len(kept.entries) == 3
    assert kept.get("f", lambda: compute("again")) == ["again"]        # past the bound: computed, not kept
