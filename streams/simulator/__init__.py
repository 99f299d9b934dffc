"""Seeded customer simulator with ground truth (pure: no Kafka or Redis).

It produces realistic customer events and churn labels in the v1 wire format, plus a
hidden ground-truth table saying who churned, when and why, so that learning and
alerting can be tested against known answers.

Model
-----
*Customers.* ``n_customers`` customers; a share ``initial_share`` is already subscribed at
``start`` (tenure up to two years), the others join on a uniformly drawn day. Each is on a
plan (price, monthly or annual billing, tier) and has latent traits: baseline engagement,
price sensitivity, card risk, ticket proneness. Ids (``c-000042``) follow join order.

*Engagement.* Log-activity is ``baseline + x`` where ``x`` is a mean-reverting random walk;
about once every 200 days a sharp decline drops it by 0.7-1.6 (a factor 2-5 in activity),
recovering only slowly. Each day an active customer has Poisson ``session``\\ s
(``events_per_active_day`` scaled by relative engagement and a weekday/weekend factor, at
times following a daily profile), ``feature_use`` events inside sessions
(``properties.feature``) and occasional add-on ``purchase``\\ s.

*Experience.* ``support_ticket``\\ s arrive at a per-customer rate and on sharp declines; 30 %
stay unresolved for weeks and breed ``complaint``\\ s. Renewals (every 30 or 365 days from
the join) charge the plan price: a ``purchase`` (``properties.kind = "renewal"``) or a
``payment_failure`` (retried twice, 3 days apart). Engaged customers sometimes upgrade,
disengaged ones downgrade (``plan_change``, value = new price). Price increases
(``price_increases``) notify every active customer of the plan with a ``plan_change``
``from_plan == to_plan``, ``reason = "price_increase"``. Signups and returns are
``plan_change`` events from ``"none"`` followed by the first charge.

*Churn.* Each day, among customers active since before today, the expected number of
churners is calibrated to ``churn_base_rate`` (a monthly rate). A share
``no_warning_share`` of it falls on customers at random; the rest falls in proportion to
``exp(signal_strength * z)``, ``z`` being the standardised risk score: a weighted sum of
engagement decline, low engagement, open tickets, recent complaints, recent payment
failures and price increases (times price sensitivity). Renewal days weigh much more than
ordinary days (churn at renewal versus mid-term cancellation). From ``regime_change_day``
on the weights change: tickets and complaints stop mattering, price dominates. A churn
label is emitted at the churn instant; the customer then emits nothing; with probability
``return_share`` they come back once, 3-17 weeks later (a ``"reactivation"`` plan change).

Output
------
Events are globally sorted by time; ids are deterministic (``e-<seed>-<n>``,
``l-<seed>-<n>``); the same config gives byte-identical files. See :func:`simulate`,
:func:`write_files`, :func:`run_to_files` and, for offline checks of the signal,
:mod:`streams.simulator.analysis`.
"""

from streams.simulator.config import DEFAULT_PLANS, Plan, PriceIncrease, SimulationConfig
from streams.simulator.schema import EVENT_TYPES, SCHEMA_VERSION, VALUE_EVENT_TYPES
from streams.simulator.simulation import Simulation, simulate
from streams.simulator.writers import (
    FORMATS,
    Format,
    ParquetUnavailableError,
    RunSummary,
    run_to_files,
    write_files,
)

__all__ = [
    "DEFAULT_PLANS",
    "EVENT_TYPES",
    "FORMATS",
    "SCHEMA_VERSION",
    "VALUE_EVENT_TYPES",
    "Format",
    "ParquetUnavailableError",
    "Plan",
    "PriceIncrease",
    "RunSummary",
    "Simulation",
    "SimulationConfig",
    "run_to_files",
    "simulate",
    "write_files",
]
