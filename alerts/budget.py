"""Alert budgets: a team's capacity turned into live thresholds (pure, in event time).

A team states what it can work: ``per_day`` alerts (over all score partitions), or
``share_per_week`` of the active customers. Per score partition and team, :class:`BudgetState`
keeps

* a **streaming quantile sketch** of the rank values (probability, or probability x customer
  value) of the customers **free to alert**, one value per customer per event-time day (their
  first score of the day) unless the customer is in an episode that has alerted or inside the
  cooldown after an alert: River's :class:`~river.stats.RollingQuantile` at a ladder of levels
  (top 1/2, 1/4, ... 1/4096), read between the rungs by interpolation in log share. Customers
  already alerted do not take the top places of the queue, so a level means the same supply of
  new alerts however many alerted customers stay high (when the model's scores spread out, the
  alerted ones did, and a whole-population sketch left too few free customers above enter);
* a **level**: the share ``q`` of free customer-days that should sit above the *enter* threshold.
  The thresholds of the state machine are the sketch's values at ``q`` (enter; also the
  *medium* tier), ``q x high_share`` (high), ``q x critical_share`` (critical) and
  ``q x exit_factor`` (exit, the hysteresis): tiers are ranks inside the budget, critical is
  the top of the queue. An escalation takes room like any alert (without them,
  ``PolicyParams.escalate`` false, each alert is a customer new to the team: docs/alerts.md);
* a **controller**: at every event-time day boundary the level moves by
  ``gain x log2(aimed / wanted)`` (wanted: a smoothed daily count of alerts sent plus episodes
  the cap held; aimed = ``aim`` x the daily budget), at most ``max_step``, so the alert volume
  follows the budget whatever the score distribution does. A calendar week that is a whole
  alert or more behind its paced allowance (below) has too few customers above enter, whatever
  the smoothed count says: the level does not fall that day, and rises by
  ``gain x log2(allowance / sent)`` (no wind-up after a burst of held episodes);
* a **cap per calendar week** (UTC ISO week, Monday 00:00 to Sunday 24:00 of event time, the
  week the team and the report count): by the end of the ``k``-th day of the week at most
  ``k/7`` of the week's budget has gone out (daily pacing; a quiet day's room carries over to
  the next days of the same week, never into the next week), and no day takes more than
  ``day_cap`` days' worth. An alert counts on its score's day, also when the score comes
  after one of a later day. Held episodes stay open and alert at a later score when there is
  room again (``PolicyParams.paused``);
* the **active customers** of the last 7 days, counted exactly from each customer's previous
  score time (the risk state has it): a share budget is a share of them.

Everything moves with the scores' event time and offset order, so a replay of the same
partition decides the same alerts, and the state is plain data (:meth:`BudgetState.to_json`,
the sketch window as float32): the alerter stores it beside the customers' records, in the same
all-or-nothing write, with the offset of the last score it counted.

>>> b = BudgetParams(budgets=(Budget(share_per_week=0.05),), min_window=10)
>>> st = BudgetState.initial(b)
>>> for i in range(50):
...     _ = st.policy_for(ScoreInput(f"c{i}", f"s{i}", i / 50, 0.0), PolicyParams())
...     st.record(i, ScoreInput(f"c{i}", f"s{i}", i / 50, 0.0), None, 0.0)
>>> p = st.policy_for(ScoreInput("x", "sx", 0.5, 0.0), PolicyParams())
>>> 0.9 < p.enter < p.high < p.critical <= 1.0, p.exit < p.enter
(True, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from alerts.budget_params import Budget as Budget
from alerts.budget_params import BudgetParams as BudgetParams
from alerts.budget_params import RankBy as RankBy
from alerts.budget_params import free_to_alert as free_to_alert
from alerts.budget_params import rank_value as rank_value
from alerts.budget_sketch import LEVELS, ScoreSketch
from alerts.measure import week_start_day
from alerts.policy import AlertDecision, PolicyParams, RiskState, ScoreInput, update

DAY_S = 86400.0


@dataclass
class TeamState:
    """One team's sketch, level (log2 share above enter) and alerts sent per event-time day."""

    sketch: ScoreSketch
    level: float
    sent: dict[int, int] = field(default_factory=dict)
    fed: int = 0  # values the sketch has taken (thresholds refresh every ``refresh``)
    thresholds: tuple[float, float, float, float, float] | None = None  # stored with the state
    waiting: dict[str, int] = field(default_factory=dict)  # episodes the cap held -> day
    rate: float | None = None  # smoothed alerts wanted per day (sent + held)
    cached: PolicyParams | None = None
    paused: PolicyParams | None = None  # ``cached``, paused (the cap is reached)

    def invalidate(self) -> None:
        self.thresholds = self.cached = self.paused = None

    def demand_since(self, day: int) -> int:
        """Alerts sent since ``day``, plus episodes the cap held back since then."""
        return self.sent_since(day) + sum(1 for d in self.waiting.values() if d >= day)

    def sent_since(self, day: int) -> int:
        return sum(n for d, n in self.sent.items() if d >= day)


@dataclass
class BudgetState:
    """The budget side of one score partition (see the module docstring)."""

    params: BudgetParams
    teams: dict[str, TeamState]
    active: dict[int, int] = field(default_factory=dict)  # day of last score -> customers
    day: int | None = None
    first_day: int | None = None
    applied: int = -1

    @staticmethod
    def initial(params: BudgetParams) -> BudgetState:
        level = math.log2(params.initial_share)
        return BudgetState(params, {b.team: TeamState(ScoreSketch(params.window), level)
                                    for b in params.budgets})

    # -- reading: the thresholds a score is judged by --------------------------------------
    def active_customers(self) -> int:
        if self.day is None:
            return 0
        return sum(n for d, n in self.active.items() if d > self.day - 7)

    def weekly_budget(self, team: str) -> float:
        budget = next(b for b in self.params.budgets if b.team == team)
        return budget.weekly(self.active_customers(), self.params.partitions)

    def policy_for(self, score: ScoreInput, base: PolicyParams) -> PolicyParams:
        """The state machine's parameters for this score: ``base`` (dwell, cooldown, ...) with
        the team's live thresholds, paused while the sketch warms up or the cap is reached."""
        return self._params(score, base)[0]

    def step(self, offset: int, before: RiskState, score: ScoreInput, base: PolicyParams,
             now: float) -> tuple[RiskState, list[AlertDecision]]:
        """One score of the partition (offset order) through the state machine under the
        budget; the budget counts it (see :meth:`record`)."""
        params, open_params = self._params(score, base)
        new, out = update(before, score, params, now)
        applied = new.scores_applied > before.scores_applied
        waiting = None
        if open_params is not None and applied and not out and new.in_episode:
            _, would = update(before, score, open_params, now)  # what the cap held back
            waiting = would[0].episode_id if would else None
        self.record(offset, score, before.last_ts, score.ts, out, applied=applied,
                    waiting=waiting, free=free_to_alert(before, score.ts, base))
        return new, out

    def _params(self, score: ScoreInput, base: PolicyParams
                ) -> tuple[PolicyParams, PolicyParams | None]:
        """(parameters, the unpaused ones when the cap paused them)."""
        self._advance(math.floor(score.ts / DAY_S))
        name = self.params.team_of(score)
        team = self.teams[name]
        if team.cached is None:
            if team.thresholds is None:
                team.thresholds = self._thresholds(team)
            enter, exit_, high, critical, upper = team.thresholds
            team.cached = replace(base, enter=enter, exit=exit_, high=high, critical=critical,
                                  upper=upper)
            team.paused = replace(team.cached, paused=True)
        assert team.paused is not None
        if len(team.sketch) < self.params.min_window:
            return team.paused, None
        day = math.floor(score.ts / DAY_S)  # the week and day the report counts the alert in
        if not self.room(name, day if self.day is None else min(day, self.day)):
            return team.paused, team.cached
        return team.cached, None

    def room(self, team: str, day: int) -> bool:
        """Whether ``team`` may send one more alert on ``day``: the week's paced allowance
        (``k/7`` of the week's budget by the end of its ``k``-th day) and the day cap."""
        week = self.weekly_budget(team)
        sent = self.teams[team].sent
        first = week_start_day(day)
        allowance = week * (day - first + 1) / 7.0
        return (sum(n for d, n in sent.items() if first <= d <= day) < allowance
                and sent.get(day, 0) < self.params.day_cap * week / 7.0)

    def _thresholds(self, team: TeamState) -> tuple[float, float, float, float, float]:
        p, sk = self.params, team.sketch
        q = 2.0 ** team.level
        # exit above the median, enter above exit: with most values tied (a saturated model
        # scoring 0 for nearly everyone) episodes would otherwise never close (score >= exit)
        floor = math.nextafter(sk.value_at(0.5), math.inf)
        exit_ = max(sk.value_at(min(q * p.exit_factor, 0.5)), floor)
        enter = max(sk.value_at(q), math.nextafter(exit_, math.inf), 1e-9)
        ceiling = max(enter, 1.0) if p.rank_by == "expected_loss" else 1.0
        enter = min(enter, ceiling)
        exit_ = min(exit_, enter * (1 - 1e-9))
        high = min(max(sk.value_at(q * p.high_share), enter), ceiling)
        critical = min(max(sk.value_at(q * p.critical_share), high), ceiling)
        return enter, max(exit_, 0.0), high, critical, ceiling

    # -- writing: what a score did ----------------------------------------------------------
    def record(self, offset: int, score: ScoreInput, previous_ts: float | None, new_ts: float,
               alerts: Sequence[AlertDecision] = (), applied: bool = True,
               waiting: str | None = None, free: bool = True) -> None:
        """Count one score of the partition (offset order): its customer's activity, its value
        in the sketch (first score of the customer's day, when the customer was ``free`` to
        alert: :func:`free_to_alert`), the alerts it raised, the episode the cap held back
        (``waiting``): the controller steers by alerts sent plus held."""
        if offset <= self.applied:
            return
        self.applied = offset
        if not applied:
            return
        day = math.floor(new_ts / DAY_S)
        self._advance(day)
        old = math.floor(previous_ts / DAY_S) if previous_ts is not None else None
        if old != day:
            if old is not None and old in self.active:
                self.active[old] -= 1
            self.active[day] = self.active.get(day, 0) + 1
        team = self.teams[self.params.team_of(score)]
        if old != day and free:
            team.sketch.update(rank_value(score, self.params.rank_by))
            team.fed += 1
            if team.fed % self.params.refresh == 0 or len(team.sketch) <= self.params.min_window:
                team.invalidate()
        today = self.day if self.day is not None else day
        if alerts:  # counted on the score's own day (a score may come after the next day's)
            sent_day = min(day, today)
            team.sent[sent_day] = team.sent.get(sent_day, 0) + len(alerts)
            for d in alerts:
                team.waiting.pop(d.episode_id, None)
        if waiting is not None and waiting not in team.waiting:
            team.waiting[waiting] = today

    def _advance(self, day: int) -> None:
        """Move the partition's clock to ``day``; each day boundary passed is one control step."""
        if self.day is None:
            self.day = self.first_day = day
            return
        if day <= self.day:
            return
        steps = 0
        while self.day < day:
            self._control(self.day)
            self.day += 1
            steps += 1
            if steps >= 8:  # a long gap: nothing more to learn from empty days
                self.day = day
        horizon = self.day - 7
        self.active = {d: n for d, n in self.active.items() if d > horizon and n > 0}
        for team in self.teams.values():
            team.sent = {d: n for d, n in team.sent.items() if d > horizon - 7}  # 2 weeks
            team.waiting = {e: d for e, d in team.waiting.items() if d > horizon}

    def _control(self, day: int) -> None:
        """End of ``day``: move each team's level towards its budget of the last 7 days; a
        week behind its paced allowance never lowers the level (see the module docstring)."""
        p = self.params
        active = sum(n for d, n in self.active.items() if d > day - 7)
        for b in p.budgets:
            team = self.teams[b.team]
            if len(team.sketch) < p.min_window:
                continue
            weekly = b.weekly(active, p.partitions)
            aimed = p.aim * weekly / 7.0
            demand = team.demand_since(day) - team.demand_since(day + 1)
            rate = aimed if team.rate is None else team.rate
            team.rate = rate = rate + p.smoothing * (demand - rate)
            eps = 0.1 * aimed + 0.05
            step = p.gain * math.log2((aimed + eps) / (rate + eps))
            first = week_start_day(day)
            paced = weekly * (day - first + 1) / 7.0  # the week's allowance by the end of day
            sent = team.sent_since(first) - team.sent_since(day + 1)
            if sent + 1 <= paced:  # a whole alert behind: too few customers above enter
                eps = 0.1 * weekly / 7.0 + 0.05
                step = max(step, p.gain * math.log2((paced + eps) / (sent + eps)))
            step = min(max(step, -p.max_step), p.max_step)
            team.level = min(max(team.level + step, -float(len(LEVELS))), -1.0)
            team.invalidate()

    # -- storage ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {"v": 1, "o": self.applied, "d": self.day, "f": self.first_day,
                "a": [[d, n] for d, n in sorted(self.active.items())],
                "t": {name: {"l": t.level, "s": [[d, n] for d, n in sorted(t.sent.items())],
                             "n": t.fed, "h": list(t.thresholds) if t.thresholds else None,
                             "w": sorted(t.waiting.items()), "r": t.rate,
                             "k": t.sketch.to_json()} for name, t in self.teams.items()}}

    @staticmethod
    def from_json(data: Mapping[str, Any] | None, params: BudgetParams) -> BudgetState:
        """The stored state (teams not stored start fresh; teams no longer budgeted go)."""
        state = BudgetState.initial(params)
        if not data:
            return state
        state.applied = int(data.get("o", -1))
        state.day = data.get("d")
        state.first_day = data.get("f")
        state.active = {int(d): int(n) for d, n in data.get("a", [])}
        for name, t in data.get("t", {}).items():
            if name in state.teams:
                h = t.get("h")
                state.teams[name] = TeamState(
                    ScoreSketch.from_json(t["k"], params.window), float(t["l"]),
                    {int(d): int(n) for d, n in t.get("s", [])}, int(t.get("n", 0)),
                    (float(h[0]), float(h[1]), float(h[2]), float(h[3]), float(h[4]))
                    if h else None, {str(e): int(d) for e, d in t.get("w", [])},
                    None if t.get("r") is None else float(t["r"]))
        return state


def ordered(scores: Sequence[tuple[int, ScoreInput]]) -> list[tuple[int, ScoreInput]]:
    """Scores of one partition in offset order (the order every replay reads them in)."""
    return sorted(scores, key=lambda o_s: o_s[0])
