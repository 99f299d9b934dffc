"""Exactly one alert per crossing across crashes: the stored record and its outbox (pure).

The alerter keeps, per customer, a :class:`Stored` record beside the risk state: the offset of
the last score (on the customer's partition of ``churn-scores``) whose effect is in the state,
and an *outbox*: the records that scores at offsets not yet known to be committed produced.

Per batch of one partition, starting at offset ``first``: everything below ``first`` is
committed (offsets commit in the same Kafka transaction as the alerts, batches of a partition
run one after the other), so outbox entries below ``first`` are dropped. Then each score:

* offset ``<=`` the stored offset: the state already contains it (the batch was processed,
  its state written, and the process died before the transaction committed). Its outbox entry
  is emitted again, byte for byte, instead of recomputing from a state that has moved on;
* otherwise it goes through :func:`alerts.policy.update`.

The caller writes the new records (all or none, compare-and-set on a version) *before* it
commits the Kafka transaction with the emitted records and the offsets. A crash before the write
recomputes the same alerts from the same state; a crash after it re-emits them from the outbox.
Either way the committed topic holds each alert id once.

>>> from alerts.policy import PolicyParams, ScoreInput
>>> p = PolicyParams(min_dwell_s=0, min_scores=1)
>>> s = ScoreInput("c", "s1", 0.8, 10.0)
>>> plan = plan_customer(Stored(), [(5, s)], first=5, params=p, now=0.0)
>>> [(o, d.alert_id) for o, d, _ in plan.decisions], plan.applied
([(5, 'c:10000:high')], 5)
>>> stored = finish(plan, {5: [("alert", {"alert_id": "c:10000:high"})]})
>>> again = plan_customer(stored, [(5, s)], first=5, params=p, now=1.0)  # replay after crash
>>> again.decisions, again.replayed
([], [(5, [('alert', {'alert_id': 'c:10000:high'})])])
>>> plan_customer(stored, [(6, s)], first=6, params=p, now=1.0).outbox   # 5 is committed
{}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from alerts.budget import BudgetState, rank_value
from alerts.policy import (
    AlertDecision,
    PolicyParams,
    RiskState,
    ScoreInput,
    update,
)
from alerts.policy_state import state_from_json, state_to_json

OutboxEntry = list[tuple[str, dict[str, Any]]]
"""Records one score produced: (``"alert"`` | ``"action"`` | ``"dead"``, record)."""


@dataclass(slots=True)
class Stored:
    """A customer's alert-side record in the state store.

    Treated as immutable (the alerter holds the records it wrote; a held record is never
    changed) but not frozen: one is built per customer of every batch, and a frozen dataclass
    sets each field through ``object.__setattr__``, about twice the cost.
    """

    state: RiskState = field(default_factory=RiskState)
    applied: int = -1
    outbox: Mapping[int, OutboxEntry] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"s": state_to_json(self.state), "o": self.applied,
                "x": {str(k): [[t, r] for t, r in v] for k, v in self.outbox.items()}}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Stored:
        """
        >>> st = Stored(RiskState(last_ts=1.0), 7, {7: [("alert", {"a": 1})]})
        >>> Stored.from_json(st.to_json()) == st
        True
        """
        return Stored(state_from_json(data.get("s", [])), int(data.get("o", -1)),
                      {int(k): [(str(t), dict(r)) for t, r in v]
                       for k, v in data.get("x", {}).items()})

    def encode(self) -> bytes:
        """``orjson.dumps(self.to_json())``, the stored bytes, without building the mapping
        first (the alerter encodes one record per customer of every batch).

        >>> st = Stored(RiskState(last_ts=1.0), 7, {7: [("alert", {"a": 1})]})
        >>> st.encode() == orjson.dumps(st.to_json()), Stored().encode()[-16:]
        (True, b'],"o":-1,"x":{}}')
        >>> st = Stored(RiskState(1e9, 0.61, ("s1", "s2"), alerted_values=(("f", 0.5),)), 12,
        ...             {11: [("alert", {"s": "é", "d": [1.5, None]}), ("action", {})], 12: []})
        >>> st.encode() == orjson.dumps(st.to_json())
        True
        """
        outbox = (orjson.dumps({str(k): v for k, v in self.outbox.items()}) if self.outbox
                  else b"{}")  # (kind, record) tuples: JSON arrays, as to_json's lists
        return b'{"s":%b,"o":%d,"x":%b}' % (orjson.dumps(state_to_json(self.state)),
                                             self.applied, outbox)


@dataclass(slots=True)
class Plan:
    """What one batch does to one customer, before its decisions are enriched."""

    state: RiskState
    applied: int
    outbox: dict[int, OutboxEntry]
    replayed: list[tuple[int, OutboxEntry]]
    decisions: list[tuple[int, AlertDecision, RiskState]]
    changed: bool


def plan_customer(stored: Stored, scores: Sequence[tuple[int, ScoreInput]], first: int,
                  params: PolicyParams, now: float) -> Plan:
    """Apply a customer's scores of one batch (offset order); see the module docstring."""
    outbox = ({k: v for k, v in stored.outbox.items() if k >= first} if stored.outbox
              else {})
    changed = len(outbox) != len(stored.outbox)
    state, applied = stored.state, stored.applied
    replayed: list[tuple[int, OutboxEntry]] = []
    decisions: list[tuple[int, AlertDecision, RiskState]] = []
    for offset, score in scores:
        if offset <= applied:
            if offset in outbox:
                replayed.append((offset, outbox[offset]))
            continue
        state, out = update(state, score, params, now)
        applied, changed = offset, True
        if out:
            decisions.extend((offset, d, state) for d in out)
    return Plan(state, applied, outbox, replayed, decisions, changed)


def finish(plan: Plan, produced: Mapping[int, OutboxEntry]) -> Stored:
    """The record to store: the plan's state, plus the records its new decisions produced."""
    outbox = dict(plan.outbox) if produced else plan.outbox  # the plan's own: not shared
    for offset, entry in produced.items():  # new lists: a held record is never changed
        outbox[offset] = [*outbox.get(offset, ()), *entry]
    return Stored(plan.state, plan.applied, outbox)


def plan_partition(stored: Mapping[str, Stored], scores: Sequence[tuple[int, ScoreInput]],
                   first: int, params: PolicyParams, budget: BudgetState,
                   now: float) -> dict[str, Plan]:
    """Budget mode: the scores of one partition's batch in offset order, each judged by the
    thresholds its team's budget gives at that point (:class:`~alerts.budget.BudgetState`,
    updated in place). Scores already applied (offset <= the customer's stored offset) are
    re-emitted from the outbox as in :func:`plan_customer`; the budget skips what it counted.

    >>> from alerts.budget import Budget, BudgetParams
    >>> b = BudgetState.initial(BudgetParams(budgets=(Budget(per_day=100),), min_window=1))
    >>> xs = [(i, ScoreInput(f"c{i % 3}", f"s{i}", 0.1 * (i % 7), i * 600.0))
    ...       for i in range(40)]
    >>> plans = plan_partition({}, xs, 0, PolicyParams(min_scores=1, min_dwell_s=0), b, 0.0)
    >>> sorted(d.alert_id for p in plans.values() for _, d, _ in p.decisions)[:2]
    ['c0:14400000:critical', 'c0:1800000:critical']
    >>> b.applied
    39
    """
    plans: dict[str, Plan] = {}
    rank_by = budget.params.rank_by
    for offset, score in sorted(scores, key=lambda o_s: o_s[0]):
        cid = score.customer_id
        plan = plans.get(cid)
        if plan is None:
            have = stored.get(cid, Stored())
            outbox = {k: v for k, v in have.outbox.items() if k >= first}
            plan = plans[cid] = Plan(have.state, have.applied, outbox, [], [],
                                     len(outbox) != len(have.outbox))
        if offset <= plan.applied:
            if offset in plan.outbox:
                plan.replayed.append((offset, plan.outbox[offset]))
            continue
        if rank_by != "probability":
            score = replace(score, rank=rank_value(score, rank_by))
        plan.state, out = budget.step(offset, plan.state, score, params, now)
        plan.applied, plan.changed = offset, True
        plan.decisions.extend((offset, d, plan.state) for d in out)
    return plans
