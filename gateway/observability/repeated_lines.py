"""Rate limiting of identical log lines: during an outage every request fails the same way,
and one line per failing read (2 MB of logs for 20k requests) drowns everything else.

`RepeatedLines.admit(key)` says whether the line for `key` is written now: the first one
is, then the same key again only after `window_s`, and that line carries how many were
left out in between. Metrics are counted elsewhere, on every event: only the log thins.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, Hashable


class RepeatedLines:
    def __init__(self, window_s: float = 10.0, max_keys: int = 4096, clock: Callable[[], float] = time.monotonic):
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self._keys: OrderedDict[Hashable, list[float | int]] = OrderedDict()   # key -> [written at, left out since]

    def admit(self, key: Hashable) -> int | None:
        """None: leave this line out. Otherwise write it, saying this many like it were left out."""
        now = self.clock()
        entry = self._keys.get(key)
        if entry is not None and now - entry[0] < self.window_s:
            entry[1] += 1
            return None
        left_out = int(entry[1]) if entry is not None else 0
        self._keys[key] = [now, 0]
        self._keys.move_to_end(key)
        if len(self._keys) > self.max_keys:   # bounded: the longest-quiet key goes (with its count)
            self._keys.popitem(last=False)
        return left_out
