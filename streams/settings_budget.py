"""Settings of alert budgets (``CHURN_ALERTS__BUDGET__…``; docs/alerts.md, "Budgets").

``mode=budget`` turns each team's capacity into live thresholds (:mod:`alerts.budget`);
``mode=thresholds`` (the default) keeps the absolute ``CHURN_ALERTS__ENTER``/``HIGH``/… ones.
One budget for everyone by default (``SHARE_PER_WEEK`` or ``PER_DAY``); ``TEAMS`` (a JSON list)
gives each team its own queue by driver category.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.budget import Budget, BudgetParams


class BudgetTeam(BaseModel):
    """One team's capacity: exactly one of ``per_day`` or ``share_per_week``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    team: str
    categories: tuple[str, ...] = ("*",)
    per_day: float | None = Field(None, gt=0)
    share_per_week: float | None = Field(None, gt=0, le=1)


class AlertBudgetSettings(BaseModel):
    """Alert budgets (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    mode: Literal["thresholds", "budget"] = "thresholds"
    share_per_week: float | None = Field(
        0.02, gt=0, le=1, description="Alerts per week as a share of the active customers.")
    per_day: float | None = Field(None, gt=0, description="Alerts per day (all partitions); "
                                                          "replaces share_per_week.")
    teams: tuple[BudgetTeam, ...] = Field((), description="Per-team budgets (JSON list of "
                                                          "{team, categories, per_day | "
                                                          "share_per_week}).")
    rank_by: Literal["probability", "expected_loss"] = "probability"
    window: int = Field(2000, ge=10, description="Customer-day values in each sketch: about "
                                                 "two days of a partition's active customers.")
    min_window: int = Field(200, ge=1, description="No alert before the sketch holds this many.")
    initial_share: float = Field(0.02, gt=0, lt=1, description="Share of the customer-days "
                                                               "of customers free to alert "
                                                               "above enter at start.")
    high_share: float = Field(1 / 3, gt=0, le=1, description="Top share of the budget: high.")
    critical_share: float = Field(0.1, gt=0, le=1, description="Top share: critical.")
    exit_factor: float = Field(2.0, ge=1, description="Episodes close below the top "
                                                      "exit_factor x the enter share.")
    gain: float = Field(0.3, ge=0, description="Level step per day, log2 of aimed/sent.")
    aim: float = Field(2.0, gt=0, le=3, description="Alerts wanted (sent + held by the cap) "
                                                    "the controller aims at, x the budget.")
    max_step: float = Field(0.15, gt=0, description="Largest level move per day (log2).")
    day_cap: float = Field(2.0, ge=1, description="A day takes at most this many days' share.")

    @model_validator(mode="after")
    def _consistent(self) -> AlertBudgetSettings:
        if self.mode == "budget":
            self.params(1)
        return self

    def params(self, partitions: int,
               type_categories: Mapping[str, str] | None = None) -> BudgetParams | None:
        """The pure :class:`alerts.budget.BudgetParams` (None in thresholds mode)."""
        if self.mode != "budget":
            return None
        if self.teams:
            budgets = tuple(Budget(t.team, t.categories, t.per_day, t.share_per_week)
                            for t in self.teams)
        elif self.per_day is not None:
            budgets = (Budget(per_day=self.per_day),)
        else:
            budgets = (Budget(share_per_week=self.share_per_week),)
        params = BudgetParams(budgets=budgets, partitions=partitions, window=self.window,
                            min_window=min(self.min_window, self.window),
                            initial_share=self.initial_share, high_share=self.high_share,
                            critical_share=self.critical_share, exit_factor=self.exit_factor,
                            gain=self.gain, aim=self.aim, max_step=self.max_step,
                            day_cap=self.day_cap,
                            rank_by=self.rank_by)
        if type_categories:
            params = replace(params, type_categories=dict(type_categories))
        return params
