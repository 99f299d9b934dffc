"""A customer's value per month, from the feature state the scorer already holds.

Budgets ranked by expected loss (``alerts.budget``, ``rank_by = "expected_loss"``) weigh a
churn probability by what the customer is worth. No extra lookup is needed: the feature state
(:mod:`online_models.features`) keeps, per event type, the lifetime sum of event ``value``
(``v.<type>``) and the first event time. The value per month is the revenue of the customer's
lifetime divided by their tenure in months::

    value = sum(v.<t> for t in revenue_types) / max(tenure, 30 days) * (365.25 / 12 days)

``revenue_types`` are the event types whose ``value`` is money paid (the simulator's
``purchase``: subscription charges, renewals, add-ons). A customer without revenue events has
no value (``None``: the budget then ranks them by probability alone). Limits, by construction:
an annual plan paid up front counts as its whole price over the months seen so far (within the
first year it is overestimated by up to twelve times at the first month, falling to the true
monthly price at a year); a refund sent as a negative value lowers it.

>>> s = {"t_first": 0.0, "v.purchase": 30.0, "v.session": 99.0}
>>> monthly_value(s, now=10 * 86400.0)  # one month's charge, ten days in: the charge
30.44
>>> monthly_value(s, now=365.25 / 12 * 86400.0 * 3)  # three months of tenure
10.0
>>> monthly_value({"t_first": 0.0, "v.session": 3.0}, now=86400.0) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping

DAY_S = 86400.0
MONTH_DAYS = 365.25 / 12
MIN_TENURE_DAYS = 30.0
REVENUE_TYPES: tuple[str, ...] = ("purchase",)


def monthly_value(state: Mapping[str, float], now: float,
                  revenue_types: tuple[str, ...] = REVENUE_TYPES) -> float | None:
    """Revenue per month of tenure (module docstring), rounded to cents; ``None`` without
    revenue events."""
    paid = 0.0
    found = False
    for kind in revenue_types:
        v = state.get(f"v.{kind}")
        if v is not None:
            paid += v
            found = True
    if not found:
        return None
    tenure_days = (now - state.get("t_first", now)) / DAY_S
    value = paid / max(tenure_days, MIN_TENURE_DAYS) * MONTH_DAYS
    return round(max(value, 0.0), 2)
