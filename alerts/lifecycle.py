"""Lifecycle stage of a customer when an alert is raised (pure).

Stages, first match wins::

    churned     the learner marked the customer churned and no event came after
    returned    came back after a churn, less than ``returned_days`` ago (event time)
    new         tenure below ``new_days`` (from the features, else first score seen): an
                onboarding problem needs other actions than a long-time customer's decline
    high_risk   in a risk episode at tier high or critical
    at_risk     in a risk episode (medium)
    active      everyone else

>>> from alerts.policy import RiskState
>>> stage(RiskState(first_seen=0.0), now=86400.0)
'new'
>>> stage(RiskState(first_seen=0.0, episode_start=5.0, alerted_tier=1), now=90 * 86400.0)
'high_risk'
>>> stage(RiskState(first_seen=0.0, episode_start=5.0, alerted_tier=0), now=90 * 86400.0)
'at_risk'
>>> stage(RiskState(first_seen=0.0, returned_at=10 * 86400.0), now=20 * 86400.0)
'returned'
"""

from __future__ import annotations

from typing import Literal

from alerts.policy import RiskState

Stage = Literal["new", "active", "at_risk", "high_risk", "churned", "returned"]
STAGES: tuple[Stage, ...] = ("new", "active", "at_risk", "high_risk", "churned", "returned")
DAY_S = 86400.0


def stage(state: RiskState, now: float, tenure_days: float | None = None,
          new_days: float = 30.0, returned_days: float = 30.0) -> Stage:
    """The stage of a customer at event time ``now`` (see the module docstring).

    >>> stage(RiskState(first_seen=0.0), now=5 * DAY_S, tenure_days=400.0)
    'active'
    >>> stage(RiskState(churned_at=1.0), now=2.0)
    'churned'
    """
    if state.churned_at is not None:
        return "churned"
    if state.returned_at is not None and now - state.returned_at < returned_days * DAY_S:
        return "returned"
    if tenure_days is None:
        seen = state.first_seen if state.first_seen is not None else now
        tenure_days = (now - seen) / DAY_S
    if tenure_days < new_days:
        return "new"
    if state.in_episode:
        return "high_risk" if state.alerted_tier >= 1 else "at_risk"
    return "active"
