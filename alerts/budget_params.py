"""What a team's alert budget is, and who may take a place in its queue (pure).

:class:`Budget` (a team's capacity and driver categories), :class:`BudgetParams` (how budgets
become thresholds: :mod:`alerts.budget`), what the queue is ordered by (:func:`rank_value`) and
which customers feed the budget's sketch (:func:`free_to_alert`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from alerts.drivers import DEFAULT_TYPE_CATEGORIES, category
from alerts.policy import PolicyParams, RiskState, ScoreInput

RankBy = Literal["probability", "expected_loss"]


@dataclass(frozen=True, slots=True)
class Budget:
    """One team's capacity, and which scores its queue takes (driver categories, ``*`` all).

    >>> Budget(per_day=10).weekly(active=500, partitions=2)
    35.0
    >>> Budget(share_per_week=0.02).weekly(active=500, partitions=2)
    10.0
    >>> Budget()
    Traceback (most recent call last):
    ...
    ValueError: a budget needs exactly one of per_day > 0 or share_per_week in (0, 1]
    """

    team: str = "all"
    categories: tuple[str, ...] = ("*",)
    per_day: float | None = None
    share_per_week: float | None = None

    def __post_init__(self) -> None:
        day = self.per_day is not None and self.per_day > 0
        share = self.share_per_week is not None and 0 < self.share_per_week <= 1
        if day == share or (self.per_day is not None and self.share_per_week is not None):
            raise ValueError("a budget needs exactly one of per_day > 0 or "
                             "share_per_week in (0, 1]")

    def takes(self, cat: str) -> bool:
        return "*" in self.categories or cat in self.categories

    def weekly(self, active: int, partitions: int) -> float:
        """This partition's alerts for a week: its share of a per-day budget, or the share of
        its active customers."""
        if self.per_day is not None:
            return self.per_day * 7.0 / partitions
        assert self.share_per_week is not None
        return self.share_per_week * active


@dataclass(frozen=True, slots=True)
class BudgetParams:
    """How budgets become thresholds (see the module docstring)."""

    budgets: tuple[Budget, ...] = (Budget(share_per_week=0.02),)
    partitions: int = 1
    window: int = 2000
    min_window: int = 200
    initial_share: float = 0.02
    high_share: float = 1 / 3
    critical_share: float = 0.1
    exit_factor: float = 2.0
    gain: float = 0.3
    aim: float = 2.0
    day_cap: float = 2.0
    rank_by: RankBy = "probability"
    refresh: int = 50  # thresholds are re-read from the sketch every this many values
    smoothing: float = 0.3  # weight of the newest day in the smoothed daily demand
    max_step: float = 0.15  # largest level move per day (log2 share)
    type_categories: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_TYPE_CATEGORIES))

    def __post_init__(self) -> None:
        if not self.budgets:
            raise ValueError("budget mode needs at least one team budget")
        if len({b.team for b in self.budgets}) != len(self.budgets):
            raise ValueError("team names of the budgets must differ")
        if self.partitions < 1 or self.window < 10 or not 1 <= self.min_window <= self.window:
            raise ValueError("need partitions >= 1, window >= 10, 1 <= min_window <= window")
        if not (0 < self.critical_share <= self.high_share <= 1 <= self.exit_factor
                and 0 < self.initial_share < 1 and 0 < self.aim <= 3 and self.gain >= 0
                and self.day_cap >= 1):
            raise ValueError("need 0 < critical_share <= high_share <= 1 <= exit_factor, "
                             "0 < initial_share < 1, 0 < aim <= 3, gain >= 0, day_cap >= 1")

    def team_of(self, score: ScoreInput) -> str:
        """The team whose queue a score goes to: the first budget taking the category of the
        driver that pushes hardest towards churn (``unknown`` without drivers)."""
        if len(self.budgets) == 1:
            return self.budgets[0].team
        top = max(score.drivers, key=lambda d: d.contribution, default=None)
        cat = ("unknown" if top is None or top.contribution <= 0
               else category(top.feature, self.type_categories))
        return next((b.team for b in self.budgets if b.takes(cat)), self.budgets[-1].team)


def rank_value(score: ScoreInput, rank_by: RankBy) -> float:
    """What the queue is ordered by: the probability, or the expected loss (probability x the
    customer's value per month, ``score.value``; 1 when unknown).

    >>> s = ScoreInput("c", "s", 0.2, 0.0, value=50.0)
    >>> rank_value(s, "probability"), rank_value(s, "expected_loss")
    (0.2, 10.0)
    """
    if rank_by == "expected_loss":
        return score.score * (score.value if score.value is not None else 1.0)
    return score.score


def free_to_alert(state: RiskState, ts: float, params: PolicyParams) -> bool:
    """Whether a customer (risk state before a score at ``ts``) could raise a new alert: not in
    an episode that has alerted, not inside the cooldown after their last alert. Only these
    customers' values go into the budget's sketch.

    >>> p = PolicyParams(cooldown_s=10.0)
    >>> free_to_alert(RiskState(), 5.0, p)
    True
    >>> free_to_alert(RiskState(episode_start=1.0, alerted_tier=0, last_alert_ts=2.0), 50.0, p)
    False
    >>> free_to_alert(RiskState(last_alert_ts=2.0), 5.0, p), free_to_alert(
    ...     RiskState(last_alert_ts=2.0), 12.0, p)
    (False, True)
    """
    if state.in_episode and state.alerted_tier >= 0:
        return False
    return state.last_alert_ts is None or ts - state.last_alert_ts >= params.cooldown_s
