"""What changed between two reads of an account: holdings added, different or removed.

Compared exactly: Decimal amounts and values by value (never through a float), and only
what a client sees of a holding (amounts, price, value, wallet, token), not the time the
upstream last touched it. A holding of a source whose read FAILED this time is not
"removed": the failure is reported as that source's status, and its holdings come back
unchanged (no event) or changed (an event) once it answers again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.domain.records import HoldingRecord, SourceFetch, SourceId, SourceState


def signature(h: HoldingRecord) -> tuple[Any, ...]:
    price = (h.price.unit, h.price.currency, h.price.reliability) if h.price is not None else None
    value = (h.value.amount, h.value.currency) if h.value is not None else None
    return (h.wallet.id, h.token.id, h.amount, h.amount_raw, h.precision, h.available, h.locked, h.pending,
            h.staked, price, value)


@dataclass
class Change:
    changed: list[HoldingRecord]
    removed_ids: list[str]
    states_changed: bool

    @property
    def empty(self) -> bool:
        return not self.changed and not self.removed_ids and not self.states_changed


@dataclass
class ChangeTracker:
    """The last state a subscriber was sent; `compare` moves it to the new one."""
    seen: dict[str, tuple[HoldingRecord, tuple[Any, ...]]] | None = None
    states: dict[SourceId, SourceState] = field(default_factory=dict)

    def compare(self, holdings: list[HoldingRecord], fetches: list[SourceFetch]) -> Change:
        states = _states(fetches)
        failed = {s for s, state in states.items() if state is SourceState.FAILED}
        current = {h.id: (h, signature(h)) for h in holdings}
        if self.seen is None:   # the first event: everything the account holds now
            change = Change(changed=list(holdings), removed_ids=[], states_changed=True)
        else:
            changed = [h for hid, (h, sig) in current.items()
                       if hid not in self.seen or self.seen[hid][1] != sig]
            removed = [hid for hid, (h, _) in self.seen.items() if hid not in current and h.source not in failed]
            change = Change(changed=changed, removed_ids=removed, states_changed=states != self.states)
            # Holdings of a failed source are kept as last seen: not removed, not re-sent later.
            for hid, entry in self.seen.items():
                if hid not in current and entry[0].source in failed:
                    current[hid] = entry
        self.seen = current
        self.states = states
        return change


def _states(fetches: list[SourceFetch]) -> dict[SourceId, SourceState]:
    out: dict[SourceId, SourceState] = {}
    for f in fetches:
        previous = out.get(f.source)
        if previous is None or previous is SourceState.FAILED:
            out[f.source] = f.state   # a source is FAILED only when every identity failed
    return out
