"""bench/history.py runs end to end on a small database (PostgreSQL) and prints its figures.
The figures themselves are not checked here: targets are the bench's to report."""
from __future__ import annotations

import subprocess
import sys

from bench.common import ROOT
from tests.store_db import fresh_postgres


def test_the_history_bench_runs_and_prints_every_figure():
    with fresh_postgres():   # skips (outside CI) when no PostgreSQL answers
        pass
    run = subprocess.run([sys.executable, "-m", "bench.history", "--accounts", "20", "--days", "14",
                          "--samples", "5", "--reads", "5"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode in (0, 1), run.stderr[-2000:]   # 1: the p95 target missed on a loaded machine
    for line in ("bytes per account-day", "store path (query + series)", "GraphQL over HTTP",
                 "target p95 <= 100 ms over HTTP", "history off", "history on, writes blocked"):
        assert line in run.stdout, run.stdout
    assert "Traceback" not in run.stderr
