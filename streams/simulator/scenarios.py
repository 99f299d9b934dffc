"""Named worlds for the simulator: the same knobs, different churn mechanisms.

``churnpulse simulate --scenario NAME`` and the model benchmark (``bench/bench_models.py``)
pick one of :data:`SCENARIOS`; every other knob (seed, customers, days, churn rate, ...) keeps
its meaning. ``default`` is the plain simulator, byte for byte.

=================  ==========================================================================
``default``        engagement decline, tickets, complaints, payment failures, price increases
``mix``            churn driven by the *mix* of behaviour (feature uses per session), not by
                   volume: engagement weighs nothing; another event vocabulary (``app_open``,
                   ``screen_view``, ...)
``social``         customers tied to others: a tie's churn raises risk; ``message`` events
``price-shock``    several steep price increases that dominate churn, plus a yearly season
                   of churn (peak mid-January) and of activity (dip at the same time)
``noisy-labels``   the default world, but 25 % of churns unlabelled, spurious labels
                   (15 % of the churns) on customers who stay, labels up to 10 days late
=================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from streams.simulator.config import PriceIncrease, SimulationConfig
from streams.simulator.mechanisms import Mechanisms

#: An app's vocabulary for the internal types (session, feature_use, purchase, support_ticket,
#: complaint, payment_failure, plan_change, message).
APP_VOCABULARY: tuple[str, ...] = (
    "app_open", "screen_view", "order", "help_request", "escalation", "card_declined",
    "subscription_update", "chat_message",
)  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    """A named world: mechanisms, and optionally its own price schedule."""

    name: str
    description: str
    mechanisms: Mechanisms | None
    prices: Callable[[SimulationConfig], tuple[PriceIncrease, ...]] | None = None

    def apply(self, config: SimulationConfig) -> SimulationConfig:
        """``config`` in this world (its other knobs unchanged)."""
        if self.mechanisms is None and self.prices is None:
            return config
        changes: dict[str, object] = {"mechanisms": self.mechanisms}
        if self.prices is not None:
            changes["price_increases"] = self.prices(config)
        return config.replace(**changes)


def _price_shocks(config: SimulationConfig) -> tuple[PriceIncrease, ...]:
    """Every plan gets a steep increase, in three waves over the period."""
    out = []
    for i, plan in enumerate(config.plans):
        day = int(config.days * (0.2 + 0.25 * (i % 3)))
        out.append(PriceIncrease(plan.name, min(day, config.days - 1), 0.25 + 0.05 * (i % 2)))
    return tuple(out)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("default", "the plain simulator", None),
        Scenario(
            "mix", "churn driven by feature uses per session, not volume; app vocabulary",
            Mechanisms(weights=(0.0, 0.0, 0.6, 0.5, 0.8, 0.5), mix_weight=2.0,
                       vocabulary=APP_VOCABULARY),
        ),
        Scenario(
            "social", "churn spreads along ties between customers; message events",
            Mechanisms(ties_per_customer=4.0, social_weight=3.0),
        ),
        Scenario(
            "price-shock", "steep price increases drive churn; yearly season",
            Mechanisms(weights=(0.8, 0.4, 0.4, 0.4, 0.8, 3.0), season_churn=0.4,
                       season_activity=0.2),
            _price_shocks,
        ),
        Scenario(
            "noisy-labels", "unlabelled churns, spurious labels, late labels",
            Mechanisms(label_drop_share=0.25, false_label_rate=0.15, label_delay_days=10.0),
        ),
    )
}


def scenario(name: str) -> Scenario:
    """The scenario called ``name`` (a clear error lists the names)."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; expected one of "
                         f"{', '.join(SCENARIOS)}") from None
