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
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


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
                "severity": a.severity, "t0": a.ts, "resolved_at": self.resolved_at,
                "outcome": "churned" if self.churned else "stayed",
                "accepted_offer": self.accepted}


def outcome_id(action_id: str) -> str:
    return f"{action_id}:outcome"


@dataclass
class OutcomeJoiner:
    """Pending actions, the churn labels and accepted offers seen, the ids resolved."""

    horizon_s: float
    pending: dict[str, Action] = field(default_factory=dict)
    resolved: set[str] = field(default_factory=set)
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
        due = []
        while self._due and self._due[0][0] <= self.clock:
            _, aid = heapq.heappop(self._due)
            if aid in self.pending:  # else resolved by a churn label already
                due.append(self.pending[aid])
        out = []
        for a in due:
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
        self.resolved.add(oid)
        offer = next((o for t, o in self.accepted.get(a.customer_id, ())
                      if a.ts <= t <= a.ts + self.horizon_s), None)
        return ActionOutcome(oid, a, churned, at, offer)

    def to_json(self) -> dict[str, Any]:
        return {"horizon_s": self.horizon_s, "clock": self.clock,
                "pending": [asdict(a) for a in self.pending.values()],
                "resolved": sorted(self.resolved), "churns": self.churns,
                "accepted": {c: [list(x) for x in v] for c, v in self.accepted.items()}}

    @staticmethod
    def from_json(obj: Mapping[str, Any]) -> OutcomeJoiner:
        j = OutcomeJoiner(float(obj["horizon_s"]), clock=float(obj["clock"]))
        for raw in obj["pending"]:
            a = dict(raw)
            a["offers"] = tuple(a.get("offers", ()))
            j.add_action(Action(**a))
        j.resolved = set(obj["resolved"])
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
