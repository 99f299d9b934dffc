"""From a policy decision to the wire records: drivers in words, stage, segment, route, holdout.

>>> from alerts.policy import PolicyParams, RiskState, ScoreInput, update, Driver
>>> cfg = AlertConfig(policy=PolicyParams(min_dwell_s=0, min_scores=1), holdout_share=0.0)
>>> s, [d] = update(RiskState(), ScoreInput("c-1", "s1", 0.8, 0.0,
...                 drivers=(Driver("days_since.payment_failure", 2.0, 0.7),)), cfg.policy, 0.0)
>>> alert, action = enrich(d, s, {"value_30d.purchase": 200.0, "tenure_days": 300.0},
...                        "steady regulars", cfg)
>>> alert["recommended_action"], alert["customer_value"], action["action"]
('payment recovery email', 'high', 'payment recovery email')
>>> alert["summary"]
'Churn risk 80%: 2 days since the last payment failure.'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts.advice import Advice, action_extras, advise
from alerts.budget import BudgetParams
from alerts.contracts import action_record, alert_record
from alerts.drivers import DEFAULT_TYPE_CATEGORIES, main_category, summary, views
from alerts.lifecycle import stage
from alerts.policy import AlertDecision, PolicyParams, RiskState
from alerts.routing import Route, RoutingTable, in_holdout, value_tier
from alerts.segments import spend_per_month


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """Everything the alert side decides with (built from ``Settings.alerts``)."""

    policy: PolicyParams = field(default_factory=PolicyParams)
    routing: RoutingTable = field(default_factory=RoutingTable.default)
    holdout_share: float = 0.1
    holdout_salt: str = ""
    value_mid_from: float = 20.0
    value_high_from: float = 100.0
    new_days: float = 30.0
    returned_days: float = 30.0
    type_categories: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_TYPE_CATEGORIES))
    budget: BudgetParams | None = None  # None: absolute thresholds (``policy``) only
    # the live retention state (offers, learning policy; docs/retention.md): a getter of the
    # newest published Advice, None (or returning None): alerts as the static table makes them
    advice: Callable[[], Advice | None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout_share <= 1.0:
            raise ValueError(f"holdout_share {self.holdout_share} must be within [0, 1]")


def enrich(decision: AlertDecision, state: RiskState, features: Mapping[str, float] | None,
           segment: str, config: AlertConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """The alert record and its retention-action decision.

    ``features`` is the customer's feature catalogue at the alert (None when it could not be
    read: value tier ``mid``, tenure from the first score seen).
    """
    shown = views(decision.drivers, config.type_categories)
    cat = main_category(shown)
    spend = spend_per_month(features) if features else None
    value = value_tier(spend, config.value_mid_from, config.value_high_from)
    route = _route(config.routing, cat, decision.severity, value)
    holdout = in_holdout(decision.customer_id, config.holdout_share, config.holdout_salt)
    tenure = features.get("tenure_days") if features else None
    lifecycle = stage(state, decision.ts, tenure, config.new_days, config.returned_days)
    text = summary(decision.score, decision.previous_score, shown)
    alert = alert_record(decision, shown, text, lifecycle, segment, route, holdout, value, cat)
    advice = config.advice() if config.advice is not None else None
    if advice is not None:
        advise(alert, route, advice)
    return alert, {**action_record(alert), **action_extras(alert)}


_ROUTES: dict[int, tuple[RoutingTable, dict[tuple[str, str, str], Route]]] = {}


def _route(table: RoutingTable, category: str, severity: str, value: str) -> Route:
    """``table.route(...)``, remembered per table (routes are frozen; the table is scanned
    rule by rule, a cost per alert). Keyed by the table's id while it is held here, so an
    id is never reused for another table meanwhile.

    >>> t = RoutingTable.default()
    >>> _route(t, "billing", "high", "mid") == t.route("billing", "high", "mid")
    True
    """
    entry = _ROUTES.get(id(table))
    if entry is None or entry[0] is not table:
        if len(_ROUTES) >= 64:  # configurations come and go in tests, not in a process
            _ROUTES.clear()
        entry = _ROUTES[id(table)] = (table, {})
    routes = entry[1]
    key = (category, severity, value)
    route = routes.get(key)
    if route is None:
        route = routes[key] = table.route(category, severity, value)
    return route
