"""Outcomes per retention action: each action resolves once, when its horizon does (pure).

An action taken at event time ``t0`` (holdout decisions too: their outcome is the comparison)
resolves as

* ``churned`` at the first churn label of its customer in ``(t0, t0 + horizon]``, or
* ``stayed`` once the labels' clock has passed ``t0 + horizon`` without one,

plus, for offers, whether the customer *accepted* an offer (an ``offer_accepted`` event) in
the same window. Like the learner's snapshots, the join is exactly once: the outcome id is
``<action_id>:outcome`` (deterministic), an action id seen again (at-least-once delivery, a
replay) adds nothing, and a resolved id never resolves again. The joiner's state is plain data
(:meth:`OutcomeJoiner.to_json`), so it can be checkpointed beside the offsets it covers.

>>> j = OutcomeJoiner(horizon_s=100.0)
>>> j.add_action(Action("c-1:0:high", "c-1", 0.0, "email", False, "steady regulars",
...                     "engagement", "high"))
True
>>> j.add_action(Action("c-1:0:high", "c-1", 0.0, "email", False, "steady regulars",
...                     "engagement", "high"))   # the same action again
False
>>> j.add_label("c-1", 50.0, True)[0].outcome_id
'c-1:0:high:outcome'
>>> j.add_label("c-1", 60.0, True), j.advance(1e9)   # resolved once only
([], [])
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from alerts.timefmt import format_ts


@dataclass(frozen=True, slots=True)
class Action:
    """A retention decision as the outcome join needs it."""

    action_id: str
    customer_id: str
    ts: float
    action: str  # what was done; for the holdout, the action it would have got
    holdout: bool
    segment: str = ""
    driver_category: str = ""
    severity: str = ""
    context: str = ""  # the learning policy's context key, if any
    offers: tuple[str, ...] = ()  # offers presented with the action


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """The resolved outcome of one action."""

    outcome_id: str
    action: Action
    churned: bool
    resolved_at: float
    accepted: str | None = None  # the offer accepted in the window, if any

    @property
    def stayed(self) -> bool:
        return not self.churned

    def to_wire(self) -> dict[str, Any]:
        a = self.action
        return {"schema_version": 1, "outcome_id": self.outcome_id, "action_id": a.action_id,
                "customer_id": a.customer_id, "action": a.action, "holdout": a.holdout,
                "segment": a.segment, "driver_category": a.driver_category,
                "severity": a.severity, "t0": format_ts(a.ts),
                "resolved_at": format_ts(self.resolved_at), "context": a.context,
                "outcome": "churned" if self.churned else "stayed",
                "accepted_offer": self.accepted}


def outcome_id(action_id: str) -> str:
    return f"{action_id}:outcome"


@dataclass
class OutcomeJoiner:
    """Pending actions, the churn labels and accepted offers seen, the ids resolved."""

    horizon_s: float
    pending: dict[str, Action] = field(default_factory=dict)
    resolved: dict[str, float] = field(default_factory=dict)  # outcome id -> action time
    churns: dict[str, list[float]] = field(default_factory=dict)
    accepted: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    clock: float = float("-inf")
    _by_customer: dict[str, set[str]] = field(default_factory=dict, repr=False)
    _due: list[tuple[float, str]] = field(default_factory=list, repr=False)  # heap: end, id

    def __post_init__(self) -> None:
        for a in self.pending.values():
            self._index(a)

    def _index(self, a: Action) -> None:
        self._by_customer.setdefault(a.customer_id, set()).add(a.action_id)
        heapq.heappush(self._due, (a.ts + self.horizon_s, a.action_id))

    def add_action(self, action: Action) -> bool:
        """Track an action; False when its id is pending or resolved already."""
        if action.action_id in self.pending or outcome_id(action.action_id) in self.resolved:
            return False
        self.pending[action.action_id] = action
        self._index(action)
        times = self.churns.get(action.customer_id, ())
        i = bisect.bisect_right(times, action.ts)
        if i < len(times) and times[i] <= action.ts + self.horizon_s:
            # its churn label came first (another topic read ahead): due at the churn, so the
            # next advance() resolves it without waiting for the horizon's end
            heapq.heappush(self._due, (times[i], action.action_id))
        return True

    def add_offer(self, customer_id: str, ts: float, offer: str) -> None:
        """An accepted offer (``offer_accepted`` event) of the customer."""
        self.accepted.setdefault(customer_id, []).append((ts, offer))

    def add_label(self, customer_id: str, ts: float, churned: bool) -> list[ActionOutcome]:
        """A churn label: resolves the customer's pending actions whose window holds it,
        and moves the labels' clock (which may resolve others as stayed)."""
        out: list[ActionOutcome] = []
        if churned:
            bisect.insort(self.churns.setdefault(customer_id, []), ts)
            for a in sorted(self._of(customer_id), key=lambda a: (a.ts, a.action_id)):
                if a.ts < ts <= a.ts + self.horizon_s:
                    out.append(self._resolve(a, True, ts))
        return out + self.advance(ts)

    def advance(self, clock: float) -> list[ActionOutcome]:
        """Resolve as stayed every pending action whose horizon ended by ``clock``."""
        self.clock = max(self.clock, clock)
        out = []
        while self._due and self._due[0][0] <= self.clock:
            _, aid = heapq.heappop(self._due)
            a = self.pending.get(aid)
            if a is None:  # resolved already (an action can be due twice: at its churn label
                continue  # and at its horizon's end; resolving it drops it from pending)
            end = a.ts + self.horizon_s
            times = self.churns.get(a.customer_id, [])
            i = bisect.bisect_right(times, a.ts)
            churn = times[i] if i < len(times) and times[i] <= end else None
            out.append(self._resolve(a, churn is not None, end if churn is None else churn))
        return out

    def _of(self, customer_id: str) -> list[Action]:
        return [self.pending[i] for i in self._by_customer.get(customer_id, ())]

    def _resolve(self, a: Action, churned: bool, at: float) -> ActionOutcome:
        del self.pending[a.action_id]
        ids = self._by_customer[a.customer_id]
        ids.discard(a.action_id)
        if not ids:
            del self._by_customer[a.customer_id]
        oid = outcome_id(a.action_id)
        self.resolved[oid] = a.ts
        offer = next((o for t, o in self.accepted.get(a.customer_id, ())
                      if a.ts <= t <= a.ts + self.horizon_s), None)
        return ActionOutcome(oid, a, churned, at, offer)

    def prune(self, keep_s: float) -> int:
        """Forget churn labels, accepted offers and resolved ids older than ``clock - keep_s``
        (with ``keep_s`` >= 2 horizons no pending action needs them: a pending action started
        after ``clock - horizon``); returns how many entries went. An action older than that
        arriving afterwards would be joined again, so keep ``keep_s`` above the lag of the
        actions topic.

        >>> j = OutcomeJoiner(10.0); j.add_offer("c", 1.0, "x"); _ = j.add_label("c", 2.0, True)
        >>> j.advance(100.0), j.prune(20.0), j.churns, j.accepted
        ([], 2, {}, {})
        """
        if not math.isfinite(self.clock):
            return 0
        cut = self.clock - keep_s
        gone = 0
        for cid in list(self.churns):
            kept = [t for t in self.churns[cid] if t >= cut]
            gone += len(self.churns[cid]) - len(kept)
            self.churns[cid] = kept
            if not kept:
                del self.churns[cid]
        for cid in list(self.accepted):
            offers = [x for x in self.accepted[cid] if x[0] >= cut]
            gone += len(self.accepted[cid]) - len(offers)
            self.accepted[cid] = offers
            if not offers:
                del self.accepted[cid]
        old = [oid for oid, t in self.resolved.items() if t < cut]
        for oid in old:
            del self.resolved[oid]
        return gone + len(old)

    def to_json(self) -> dict[str, Any]:
        return {"horizon_s": self.horizon_s,
                "clock": self.clock if math.isfinite(self.clock) else None,  # JSON has no inf
                "pending": [asdict(a) for a in self.pending.values()],
                "resolved": dict(sorted(self.resolved.items())), "churns": self.churns,
                "accepted": {c: [list(x) for x in v] for c, v in self.accepted.items()}}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> OutcomeJoiner:
        clock = obj.get("clock")
        j = OutcomeJoiner(float(obj["horizon_s"]),
                          clock=float("-inf") if clock is None else float(clock))
        for raw in obj["pending"]:
            a = dict(raw)
            a["offers"] = tuple(a.get("offers", ()))
            j.add_action(Action(**a))
        got = obj["resolved"]  # a list before pruning existed: no times, kept a while
        j.resolved = ({str(k): float(v) for k, v in got.items()} if isinstance(got, dict)
                      else dict.fromkeys(map(str, got), j.clock))
        j.churns = {c: list(v) for c, v in obj["churns"].items()}
        j.accepted = {c: [(float(t), str(o)) for t, o in v] for c, v in obj["accepted"].items()}
        return j


def join_all(actions: Iterable[Action], labels: Iterable[tuple[str, float, bool]],
             horizon_s: float, offers: Iterable[tuple[str, float, str]] = ()) -> list[
                 ActionOutcome]:
    """Batch form: every action's outcome given all labels (the stream's end is the clock)."""
    j = OutcomeJoiner(horizon_s)
    for a in actions:
        j.add_action(a)
    for cid, ts, offer in offers:
        j.add_offer(cid, ts, offer)
    out: list[ActionOutcome] = []
    for cid, ts, churned in sorted(labels, key=lambda x: x[1]):
        out.extend(j.add_label(cid, ts, churned))
    return out
