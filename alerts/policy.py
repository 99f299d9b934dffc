"""The per-customer risk state machine: when a churn score becomes an alert.

Pure: ``update(state, score, params, now) -> (state, decisions)``; event time comes from the
score, wall time ``now`` is only stamped on the decisions (``processed_at``).

Rules, in the order they apply to one score of one customer:

1. *Duplicates and stale scores change nothing.* A ``score_id`` among the last
   ``params.dedup_ids`` applied, or a score older (event time) than the last applied one, is
   skipped: the worker publishes at least once, and a replay must not count a score twice.
   Nor does a score of a model version still calibrating (``calibrated`` false, issue 10):
   it is no probability anyone can act on.
2. *Churned customers are suppressed.* ``score.churned_at`` (from the learner's churn marks)
   at or after which no event arrived means the customer is gone: the episode closes without an
   alert. An event score after the churn time means the customer came back (``returned_at``).
3. *Hysteresis.* An episode opens when the score reaches ``params.enter`` and closes only when
   it falls below ``params.exit`` (< ``enter``): a score wobbling between the two keeps the
   episode, so one crossing gives one episode. The episode id is the customer id and the event
   time (ms) of the score that opened it, so a replay names it the same way.
4. *Dwell.* An episode alerts once it has lasted ``min_dwell_s`` of event time *and* seen
   ``min_scores`` scores (a single spike does not page anyone); a ``critical`` score alerts at
   once when ``critical_skips_dwell``.
5. *Cooldown.* A new episode does not alert within ``cooldown_s`` (event time) of the
   customer's previous alert; it alerts at its first score after the cooldown if it is still
   open (``critical`` skips the cooldown when ``critical_skips_cooldown``).
6. *Tiers and escalation.* The severity of a score is the highest tier it reaches (at least
   ``medium`` inside an episode). After the episode's first alert (``opened``), a score at a
   higher tier than any alerted in the episode gives an ``escalated`` alert, unless
   ``params.escalate`` is false (then an alerted episode stays quiet until it closes). Each
   tier alerts at most once per episode, so the alert id
   ``<episode_id>:<severity>`` is unique.

>>> p = PolicyParams(min_dwell_s=0.0, min_scores=1)
>>> s, out = update(RiskState(), ScoreInput("c-1", "s1", 0.7, 1000.0), p, now=0.0)
>>> [(d.kind, d.alert_id) for d in out]
[('opened', 'c-1:1000000:medium')]
>>> s, out = update(s, ScoreInput("c-1", "s2", 0.95, 2000.0), p, now=0.0)
>>> [(d.kind, d.alert_id, d.previous_severity) for d in out]
[('escalated', 'c-1:1000000:critical', 'medium')]
>>> s, out = update(s, ScoreInput("c-1", "s2", 0.95, 2000.0), p, now=0.0)  # duplicate
>>> out, s.scores_skipped
([], 1)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

SEVERITIES: tuple[str, ...] = ("medium", "high", "critical")
Kind = Literal["opened", "escalated"]


class Driver(NamedTuple):
    """One feature's part in a score (log-odds contribution), as the score record carries it.

    A named tuple, as :class:`RiskState` (decoded for every score: cheap to build)."""

    feature: str
    value: float
    contribution: float


@dataclass(slots=True)
class ScoreInput:
    """What the policy needs of one score record.

    ``ts`` is event time (epoch seconds); ``churned_at`` the learner's churn mark of the customer
    when the score was processed (None = not churned). Treated as immutable (change one with
    ``dataclasses.replace``) but not frozen: the alerter decodes one per score, and a frozen
    dataclass of these 12 fields cost ~4x more to build (``object.__setattr__`` per field).
    """

    customer_id: str
    score_id: str
    score: float
    ts: float
    reason: str = "event"
    model_version: str = ""
    drivers: tuple[Driver, ...] = ()
    source_timestamp_ms: int = 0
    churned_at: float | None = None
    value: float | None = None  # customer value per month (expected-loss ranking), if known
    rank: float | None = None  # what thresholds compare (budget mode); None = ``score``
    calibrated: bool = True  # False: the version was still calibrating (the alerter skips it)


@dataclass(frozen=True, slots=True)
class PolicyParams:
    """Thresholds (scores in [0, 1]) and times (event-time seconds) of the state machine.

    >>> PolicyParams(enter=0.5, exit=0.6)
    Traceback (most recent call last):
    ...
    ValueError: need 0 <= exit (0.6) < enter (0.5) <= high (0.75) <= critical (0.9) <= 1
    """

    enter: float = 0.6
    exit: float = 0.45
    high: float = 0.75
    critical: float = 0.9
    min_dwell_s: float = 3600.0
    min_scores: int = 2
    cooldown_s: float = 7 * 86400.0
    critical_skips_dwell: bool = True
    critical_skips_cooldown: bool = True
    dedup_ids: int = 8
    paused: bool = False  # budget mode: the cap is reached, episodes wait to alert
    upper: float = 1.0  # largest threshold (budgets ranked by expected loss go past 1)
    escalate: bool = True  # an alerted episode alerts again when it climbs a tier (rule 6)

    def __post_init__(self) -> None:
        if not 0.0 <= self.exit < self.enter <= self.high <= self.critical <= self.upper:
            raise ValueError(f"need 0 <= exit ({self.exit}) < enter ({self.enter}) <= high "
                             f"({self.high}) <= critical ({self.critical}) <= {self.upper:g}")
        if self.min_dwell_s < 0 or self.cooldown_s < 0 or self.min_scores < 1:
            raise ValueError("min_dwell_s and cooldown_s must be >= 0, min_scores >= 1")
        if self.dedup_ids < 1:
            raise ValueError("dedup_ids must be >= 1")

    def tier(self, score: float) -> int:
        """Severity index (0 medium, 1 high, 2 critical) of a score inside an episode.

        >>> p = PolicyParams()
        >>> [p.tier(x) for x in (0.5, 0.6, 0.8, 0.9)]
        [0, 0, 1, 2]
        """
        if score >= self.critical:
            return 2
        if score >= self.high:
            return 1
        return 0


class RiskState(NamedTuple):
    """Everything the policy remembers about one customer (a few hundred bytes as JSON).

    Immutable, built by keyword like a dataclass; a named tuple because the alerter builds
    one or two per score: a frozen dataclass of these 19 fields cost ~7x more to build (each
    field set through ``object.__setattr__``), the largest single cost of the policy. Change
    one with ``state._replace(...)``.
    """

    last_ts: float | None = None
    last_score: float | None = None
    recent_ids: tuple[str, ...] = ()
    first_seen: float | None = None
    episode_start: float | None = None
    episode_scores: int = 0
    episode_peak: float = 0.0
    alerted_tier: int = -1  # highest tier alerted in the open episode, -1 none
    pre_episode_score: float | None = None
    last_alert_ts: float | None = None
    last_alert_score: float | None = None
    alerted_values: tuple[tuple[str, float], ...] = ()
    churned_at: float | None = None
    returned_at: float | None = None
    episodes: int = 0
    alerts: int = 0
    scores_applied: int = 0
    scores_skipped: int = 0
    baseline_values: tuple[tuple[str, float], ...] = ()  # drivers of the last calm score

    @property
    def in_episode(self) -> bool:
        return self.episode_start is not None


@dataclass(frozen=True, slots=True)
class DriverChange:
    """A driver of an alert and how its value moved since the customer's previous alert.

    ``reference`` is the value the text compares with: the previous alert's, else the value in
    the customer's last calm score (before the episode), when that score had this driver.
    """

    feature: str
    value: float
    contribution: float
    previous: float | None
    reference: float | None = None

    @property
    def change(self) -> float | None:
        return None if self.previous is None else self.value - self.previous


@dataclass(frozen=True, slots=True)
class AlertDecision:
    """An alert the policy decided to raise (enriched into the wire record by the caller)."""

    kind: Kind
    customer_id: str
    episode_id: str
    severity: str
    previous_severity: str | None
    score: float
    previous_score: float | None
    ts: float
    processed_at: float
    score_id: str
    model_version: str
    source_timestamp_ms: int
    reason: str
    drivers: tuple[DriverChange, ...] = field(default=())

    @property
    def alert_id(self) -> str:
        return f"{self.episode_id}:{self.severity}"


def episode_id(customer_id: str, start_ts: float) -> str:
    """
    >>> episode_id("c-7", 1.5)
    'c-7:1500'
    """
    return f"{customer_id}:{round(start_ts * 1000)}"


def update(state: RiskState, score: ScoreInput, params: PolicyParams,
           now: float) -> tuple[RiskState, list[AlertDecision]]:
    """Apply one score; returns the new state and the alerts it raises (0, or 1).

    See the module docstring for the rules. ``now`` (wall time) is only recorded on decisions.
    """
    if score.score_id in state.recent_ids or (
            state.last_ts is not None and score.ts < state.last_ts) or not math.isfinite(
            score.score) or not score.calibrated:
        return _evolve(state, {"scores_skipped": state.scores_skipped + 1}), []
    if (state.episode_start is None and score.churned_at is None and state.churned_at is None
            and (score.score if score.rank is None else score.rank) < params.enter):
        return _calm(state, score, params), []
    # the changes of this score, applied to ``state`` once (a frozen dataclass per
    # ``replace`` cost the alerter more than the rules themselves)
    ch: dict[str, Any] = {
        "last_ts": score.ts, "last_score": score.score,
        "recent_ids": (*state.recent_ids, score.score_id)[-params.dedup_ids:],
        "first_seen": state.first_seen if state.first_seen is not None else score.ts,
        "scores_applied": state.scores_applied + 1}
    churned_at = score.churned_at
    if churned_at is not None and not (score.reason == "event" and score.ts > churned_at):
        ch["churned_at"] = churned_at
        ch.update(_CLOSED)
        return _evolve(state, ch), []
    if state.churned_at is not None and score.reason == "event" and score.ts > state.churned_at:
        ch["churned_at"], ch["returned_at"] = None, score.ts

    key = score.score if score.rank is None else score.rank
    if not state.in_episode:
        if key < params.enter:
            if score.drivers:  # a calm score: what "normal" looked like for the texts
                base = dict(state.baseline_values)
                base.update((d.feature, d.value) for d in score.drivers)
                ch["baseline_values"] = tuple(sorted(base.items()))[:16]
            return _evolve(state, ch), []
        ch.update(episode_start=score.ts, episode_scores=1, episode_peak=score.score,
                  alerted_tier=-1, pre_episode_score=state.last_score,
                  episodes=state.episodes + 1)
    elif key < params.exit:
        ch.update(_CLOSED)
        return _evolve(state, ch), []
    else:
        ch.update(episode_scores=state.episode_scores + 1,
                  episode_peak=max(state.episode_peak, score.score))
    seen = _evolve(state, ch)

    tier = params.tier(key)
    assert seen.episode_start is not None
    if seen.alerted_tier < 0:
        critical = tier == 2
        dwelled = (score.ts - seen.episode_start >= params.min_dwell_s
                   and seen.episode_scores >= params.min_scores)
        cooling = (seen.last_alert_ts is not None
                   and score.ts - seen.last_alert_ts < params.cooldown_s)
        if not (dwelled or (critical and params.critical_skips_dwell)):
            return seen, []
        if cooling and not (critical and params.critical_skips_cooldown):
            return seen, []
        if params.paused:
            return seen, []
        return _alert(seen, score, tier, "opened", seen.pre_episode_score, now)
    if tier > seen.alerted_tier and params.escalate and not params.paused:
        return _alert(seen, score, tier, "escalated", seen.last_alert_score, now)
    return seen, []


_CLOSED: dict[str, Any] = {"episode_start": None, "episode_scores": 0, "episode_peak": 0.0,
                           "alerted_tier": -1}


def _calm(state: RiskState, score: ScoreInput, params: PolicyParams) -> RiskState:
    """:func:`update` of the most common score: applied, below enter, no episode open, no
    churn mark on either side (the same state as the general path, built in one step).

    >>> s = ScoreInput("c", "s1", 0.1, 5.0, drivers=(Driver("f", 2.0, 0.1),))
    >>> st = _calm(RiskState(first_seen=1.0), s, PolicyParams())
    >>> st.last_ts, st.first_seen, st.recent_ids, st.scores_applied, st.baseline_values
    (5.0, 1.0, ('s1',), 1, (('f', 2.0),))
    """
    values = list(state)
    recent = state.recent_ids
    values[_LAST_TS] = score.ts
    values[_LAST_SCORE] = score.score
    values[_RECENT_IDS] = ((*recent, score.score_id) if len(recent) < params.dedup_ids
                           else (*recent, score.score_id)[-params.dedup_ids:])
    if state.first_seen is None:
        values[_FIRST_SEEN] = score.ts
    values[_SCORES_APPLIED] = state.scores_applied + 1
    if score.drivers:  # a calm score: what "normal" looked like for the texts
        base = dict(state.baseline_values)
        for d in score.drivers:
            base[d.feature] = d.value
        values[_BASELINE] = tuple(sorted(base.items()))[:16]
    return _NEW(RiskState, values)


def _evolve(state: RiskState, changes: Mapping[str, Any]) -> RiskState:
    """``state._replace(**changes)``, faster.

    >>> _evolve(RiskState(last_ts=1.0), {"alerts": 2}) == RiskState(last_ts=1.0)._replace(
    ...     alerts=2)
    True
    """
    values = list(state)
    index = _INDEX
    for name, value in changes.items():
        values[index[name]] = value
    return _NEW(RiskState, values)


def _alert(state: RiskState, score: ScoreInput, tier: int, kind: Kind,
           previous_score: float | None, now: float) -> tuple[RiskState, list[AlertDecision]]:
    assert state.episode_start is not None
    before = dict(state.alerted_values)
    base = dict(state.baseline_values)
    drivers = tuple(DriverChange(d.feature, d.value, d.contribution, before.get(d.feature),
                                 before.get(d.feature, base.get(d.feature)))
                    for d in score.drivers)
    decision = AlertDecision(
        kind=kind, customer_id=score.customer_id,
        episode_id=episode_id(score.customer_id, state.episode_start),
        severity=SEVERITIES[tier],
        previous_severity=SEVERITIES[state.alerted_tier] if state.alerted_tier >= 0 else None,
        score=score.score, previous_score=previous_score, ts=score.ts, processed_at=now,
        score_id=score.score_id, model_version=score.model_version,
        source_timestamp_ms=score.source_timestamp_ms, reason=score.reason, drivers=drivers)
    values = {**before, **{d.feature: d.value for d in score.drivers}}
    kept = tuple(sorted(values.items()))[:64]  # bounded: features of the model
    new = _evolve(state, {"alerted_tier": tier, "last_alert_ts": score.ts,
                          "last_alert_score": score.score, "alerted_values": kept,
                          "alerts": state.alerts + 1})
    return new, [decision]


def run(scores: Sequence[ScoreInput], params: PolicyParams, now: float = 0.0,
        states: Mapping[str, RiskState] | None = None,
        ) -> tuple[dict[str, RiskState], list[AlertDecision]]:
    """Apply scores of many customers in order (tests, backtests, the treatment simulator).

    >>> p = PolicyParams(min_dwell_s=0.0, min_scores=1)
    >>> xs = [ScoreInput("a", f"a{i}", s, float(i)) for i, s in enumerate([0.7, 0.5, 0.7, 0.3])]
    >>> _, out = run(xs, p)
    >>> [d.alert_id for d in out]   # 0.5 stays above exit: one crossing, one alert
    ['a:0:medium']
    """
    current = dict(states or {})
    out: list[AlertDecision] = []
    for s in scores:
        new, decisions = update(current.get(s.customer_id, RiskState()), s, params, now)
        current[s.customer_id] = new
        out.extend(decisions)
    return current, out


_FIELDS = RiskState._fields
_INDEX = {name: i for i, name in enumerate(_FIELDS)}
_NEW = tuple.__new__  # a RiskState from its 19 values in order, without the keyword parsing
_LAST_TS, _LAST_SCORE, _RECENT_IDS, _FIRST_SEEN, _SCORES_APPLIED, _BASELINE = (
    _INDEX[n] for n in ("last_ts", "last_score", "recent_ids", "first_seen", "scores_applied",
                        "baseline_values"))
