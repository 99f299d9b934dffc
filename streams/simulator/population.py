"""Static customer traits, drawn once per run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streams.simulator.clock import sample_ms
from streams.simulator.config import SimulationConfig

#: Longest tenure (days) of a customer already subscribed at the start.
MAX_INITIAL_TENURE = 730


@dataclass(frozen=True)
class Population:
    """Traits of every customer, indexed by customer number (ids are in join order).

    Attributes
    ----------
    join_day : ndarray of int64
        Day index of the subscription start (negative: before the simulated period).
    join_ms : ndarray of int64
        Offset of the join instant within that day.
    plan : ndarray of int64
        Index of the initial plan in ``config.plans``.
    baseline : ndarray of float64
        Baseline log-engagement (how active the customer is when nothing goes wrong).
    price_sensitivity : ndarray of float64
        Multiplier of the effect of price increases on churn risk.
    card_risk : ndarray of float64
        Probability that a charge fails.
    ticket_proneness : ndarray of float64
        Multiplier of the base rate of support tickets.
    """

    join_day: npt.NDArray[np.int64]
    join_ms: npt.NDArray[np.int64]
    plan: npt.NDArray[np.int64]
    baseline: npt.NDArray[np.float64]
    price_sensitivity: npt.NDArray[np.float64]
    card_risk: npt.NDArray[np.float64]
    ticket_proneness: npt.NDArray[np.float64]

    @property
    def n(self) -> int:
        """Number of customers."""
        return int(self.join_day.shape[0])


def draw_population(config: SimulationConfig, rng: np.random.Generator) -> Population:
    """Draw the customers of a run.

    Customers already subscribed at the start have a tenure uniform in 1..730 days; the
    others join on a uniformly drawn day of the period. Customers are numbered in join order.

    Parameters
    ----------
    config : SimulationConfig
    rng : numpy.random.Generator

    Returns
    -------
    Population
    """
    n = config.n_customers
    initial = rng.random(n) < config.initial_share
    join_day = np.where(
        initial,
        -rng.integers(1, MAX_INITIAL_TENURE + 1, n, dtype=np.int64),
        rng.integers(0, config.days, n, dtype=np.int64),
    )
    # Join instants stay clear of the day's last second so same-instant follow-ups fit.
    join_ms = np.minimum(sample_ms(rng, n, "activity"), 86_399_000)
    order = np.lexsort((join_ms, join_day))
    shares = np.array([p.share for p in config.plans], dtype=np.float64)
    plan = rng.choice(len(config.plans), size=n, p=shares / shares.sum()).astype(np.int64)
    bad_card = rng.random(n) < 0.15
    return Population(
        join_day=join_day[order],
        join_ms=join_ms[order],
        plan=plan,
        baseline=rng.normal(0.0, 0.45, n),
        price_sensitivity=rng.lognormal(0.0, 0.5, n),
        card_risk=np.where(bad_card, rng.uniform(0.15, 0.40, n), rng.uniform(0.0, 0.04, n)),
        ticket_proneness=rng.lognormal(-0.18, 0.6, n),
    )
