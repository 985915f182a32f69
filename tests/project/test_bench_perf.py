"""The performance bench's own arithmetic and world (the bench itself is run by hand: bench/perf.py)."""
from __future__ import annotations

import subprocess
import sys

from bench.common import LARGE, ROOT, build_world, lua_string, world_digest
from bench.perf import union_seconds
from gateway.sources.catalog import Source


def test_union_seconds_counts_overlapping_upstream_time_once():
    assert union_seconds([]) == 0
    assert union_seconds([(0.0, 1.0)]) == 1.0
    # parallel calls: 0-3 and 1-2 overlap; 5-6 is separate; 2.5-4 overlaps the first one's tail
    assert union_seconds([(1.0, 2.0), (0.0, 3.0), (5.0, 6.0), (2.5, 4.0)]) == 5.0


def test_the_simulators_process_builds_the_same_world():
    """The bench writes the gateway's config from its own world; the simulators' process
    (another interpreter, another hash seed) must serve exactly that world."""
    here = world_digest(build_world(3, large=True))
    there = subprocess.run(
        [sys.executable, "-c", "from bench.common import build_world, world_digest; "
                               "print(world_digest(build_world(3, large=True)))"],
        capture_output=True, text=True, check=True, cwd=ROOT, env={"PYTHONHASHSEED": "123", "PATH": ""}).stdout.strip()
    assert here == there


def test_large_account_has_about_ten_thousand_holdings_and_calico_stays_in_one_call():
    world = build_world(0, large=True)
    calico = world.datasets[Source.CALICO].rows[world.accounts[LARGE]["calico"]["token"]]
    assert len(calico) == 100   # Calico's one-call maximum: no truncation beyond what it can say
    cobo = world.datasets[Source.COBO]
    cobo_rows = sum(len(cobo.wallets[u]) for u in world.accounts[LARGE]["cobo"]["wallet_uuids"])
    assert 2_400 <= cobo_rows <= 2_700   # one of the four sources sharing the other ~9,900


def test_lua_strings_survive_any_text():
    assert lua_string("plain") == "[[plain]]"
    assert lua_string("a]]b") == "[=[a]]b]=]"
