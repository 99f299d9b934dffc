"""Retention-action routing: a policy table, customer value tiers and the holdout (pure).

The table maps (driver category × severity × customer value) to an action, the owning team and
an SLA. Rules are tried in order and the first whose three fields match wins (``*`` matches
anything), so specific rules go first and the last rule should be ``* * *``.

The *holdout* is a deterministic share of customers (``blake2b(salt + customer id)`` mapped to
[0, 1)) who get no action at all, only a recorded decision: comparing their churn rate with the
actioned customers' measures what the actions achieve (``churnpulse report uplift``). The same
customer is always in the same arm, across alerts, processes and replays.

>>> table = RoutingTable.default()
>>> r = table.route("billing", "critical", "high")
>>> r.action, r.team, r.sla_hours
('payment recovery call', 'billing', 4.0)
>>> table.route("engagement", "medium", "low").action
're-engagement email'
>>> in_holdout("c-000042", 0.0), in_holdout("c-000042", 1.0)
(False, True)

A row may also list *alternatives*: other actions its team can take for those customers. The
static table always takes ``action``; a learning policy (:mod:`alerts.bandit`) chooses among
``route.allowed`` (the row's action first, then its alternatives).

>>> table.route("engagement", "medium", "low").allowed
('re-engagement email', 'personal check-in email', 'discount offer')
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

HOLDOUT_ACTION = "none (holdout)"


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the policy table."""

    category: str
    severity: str
    value: str
    action: str
    team: str
    sla_hours: float
    alternatives: tuple[str, ...] = ()

    def matches(self, category: str, severity: str, value: str) -> bool:
        return all(want in ("*", got) for want, got in
                   ((self.category, category), (self.severity, severity), (self.value, value)))


@dataclass(frozen=True, slots=True)
class Route:
    action: str
    team: str
    sla_hours: float
    rule: int  # index of the rule that matched
    alternatives: tuple[str, ...] = ()

    @property
    def allowed(self) -> tuple[str, ...]:
        """The actions a learning policy may choose from: the row's action, then alternatives."""
        return (self.action, *(a for a in self.alternatives if a != self.action))


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("billing", "critical", "*", "payment recovery call", "billing", 4.0,
         ("payment recovery email", "discount offer")),
    Rule("billing", "*", "*", "payment recovery email", "billing", 24.0,
         ("payment recovery call", "discount offer")),
    Rule("support", "critical", "*", "senior support callback", "support", 4.0,
         ("support follow-up",)),
    Rule("support", "*", "*", "support follow-up", "support", 24.0,
         ("senior support callback", "personal check-in email")),
    Rule("*", "critical", "high", "account manager call", "customer success", 4.0,
         ("personal check-in call", "discount offer")),
    Rule("*", "critical", "*", "personal check-in call", "customer success", 8.0,
         ("personal check-in email", "discount offer")),
    Rule("*", "high", "high", "account manager call", "customer success", 24.0,
         ("personal check-in email",)),
    Rule("*", "high", "*", "personal check-in email", "customer success", 24.0,
         ("personal check-in call", "re-engagement email", "discount offer")),
    Rule("*", "*", "high", "personal check-in email", "customer success", 48.0,
         ("re-engagement email",)),
    Rule("*", "*", "*", "re-engagement email", "lifecycle marketing", 72.0,
         ("personal check-in email", "discount offer")),
)


@dataclass(frozen=True, slots=True)
class RoutingTable:
    rules: tuple[Rule, ...]

    def __post_init__(self) -> None:
        if not self.rules:
            raise ValueError("the policy table has no rules")
        last = self.rules[-1]
        if (last.category, last.severity, last.value) != ("*", "*", "*"):
            raise ValueError("the last rule of the policy table must be '* * *' (the fallback)")

    @staticmethod
    def default() -> RoutingTable:
        return RoutingTable(DEFAULT_RULES)

    @staticmethod
    def from_rows(rows: Iterable[Mapping[str, Any]]) -> RoutingTable:
        """From plain rows (configuration); ``alternatives`` (a list of actions) is optional.

        >>> RoutingTable.from_rows([{"category": "*", "severity": "*", "value": "*",
        ...                          "action": "email", "team": "cs", "sla_hours": 24}]).rules[0]
        Rule(category='*', severity='*', value='*', action='email', team='cs', sla_hours=24.0, \
alternatives=())
        """
        return RoutingTable(tuple(
            Rule(str(r["category"]), str(r["severity"]), str(r["value"]), str(r["action"]),
                 str(r["team"]), float(r["sla_hours"]),
                 tuple(str(a) for a in r.get("alternatives") or ())) for r in rows))

    def route(self, category: str, severity: str, value: str) -> Route:
        for i, rule in enumerate(self.rules):
            if rule.matches(category, severity, value):
                return Route(rule.action, rule.team, rule.sla_hours, i, rule.alternatives)
        raise AssertionError("unreachable: the last rule matches everything")


def holdout_bucket(customer_id: str, salt: str = "") -> float:
    """A uniform number in [0, 1) fixed by the customer id (and the experiment's salt).

    >>> holdout_bucket("c-1") == holdout_bucket("c-1"), holdout_bucket("c-1", "x") != \
holdout_bucket("c-1")
    (True, True)
    """
    digest = hashlib.blake2b(f"{salt}\x00{customer_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def in_holdout(customer_id: str, share: float, salt: str = "") -> bool:
    """Whether the customer is in the holdout (no action) of an experiment of this ``share``."""
    return holdout_bucket(customer_id, salt) < share


def value_tier(monthly_spend: float | None, mid_from: float = 20.0,
               high_from: float = 100.0) -> str:
    """Customer value tier from recent spend per month (``mid`` when unknown).

    >>> [value_tier(x) for x in (5.0, 29.99, 250.0, None)]
    ['low', 'mid', 'high', 'mid']
    """
    if monthly_spend is None:
        return "mid"
    if monthly_spend >= high_from:
        return "high"
    return "mid" if monthly_spend >= mid_from else "low"
