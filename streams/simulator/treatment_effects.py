"""Ground truth of the heterogeneous treatment simulator: segments, effects, offers, a pattern.

Used by :mod:`streams.simulator.treatment` when ``TreatmentConfig.hetero`` is set.

* **Segments** come from a customer's static traits (ticket proneness, baseline engagement):
  ``support-heavy``, ``power users``, ``occasional users``, ``steady regulars``.
* **Effects** per action and segment, in [-1, 1]: ``e > 0`` retains the customer with
  probability ``e`` for the horizon (true relative risk ``1 - e``); ``e < 0`` *provokes* them
  with probability ``|e|``: for the horizon their daily churn hazard gets a second, independent
  chance (true relative risk about ``1 + |e| * (1 - p)`` for a horizon churn rate ``p``; a
  backfiring action). :meth:`Heterogeneity.true_rr` gives the first-order truth ``1 - e`` for
  ``e >= 0`` and ``1 + |e| * (1 - p)`` given ``p``.
* **Offers**: a catalogue and each segment's acceptance probability per offer, with a personal
  taste per customer on top: two latent factors per customer (price-minded, feature-minded),
  each loading on some offers (:data:`TASTE_LOADINGS`), plus a little noise per offer, in
  log-odds. Customers who accept one discount tend to accept the other: structure that
  collaborative filtering can find and a segment cannot.
* **A planted churn pattern**: a share of customers become *leavers*: a billing support ticket,
  2-4 days later a payment failure, 2-4 days after that a complaint, and churn 6-14 days later.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

SEGMENTS: tuple[str, ...] = ("support-heavy", "power users", "occasional users",
                             "steady regulars")

#: action -> effect per segment (order of :data:`SEGMENTS`).
DEFAULT_EFFECTS: Mapping[str, tuple[float, float, float, float]] = {
    "re-engagement email": (-0.3, -0.4, 0.5, 0.2),
    "personal check-in email": (0.3, 0.2, 0.0, 0.4),
    "personal check-in call": (0.4, 0.6, -0.4, 0.3),
    "discount offer": (0.0, -0.3, 0.7, 0.3),
    "account manager call": (0.3, 0.6, 0.0, 0.3),
    "support follow-up": (0.3, 0.1, 0.0, 0.2),
    "senior support callback": (0.7, 0.3, 0.0, 0.3),
    "payment recovery email": (0.3, 0.3, 0.3, 0.3),
    "payment recovery call": (0.5, 0.4, 0.1, 0.4),
}

OFFERS: tuple[str, ...] = ("free_month", "discount_20", "annual_switch", "feature_training",
                           "priority_support", "addon_bundle", "loyalty_points", "downgrade_plan")
#: segment -> acceptance probability of each offer (order of :data:`OFFERS`).
DEFAULT_OFFER_PREFS: Mapping[str, tuple[float, ...]] = {
    "support-heavy": (0.10, 0.08, 0.04, 0.30, 0.45, 0.05, 0.08, 0.06),
    "power users": (0.06, 0.05, 0.35, 0.10, 0.12, 0.40, 0.15, 0.02),
    "occasional users": (0.40, 0.35, 0.03, 0.08, 0.04, 0.05, 0.10, 0.30),
    "steady regulars": (0.15, 0.12, 0.20, 0.10, 0.08, 0.12, 0.35, 0.05),
}

#: Loadings of the two personal taste factors on each offer (order of :data:`OFFERS`).
TASTE_LOADINGS: tuple[tuple[float, ...], ...] = (
    (1.0, 1.0, -0.3, -0.5, -0.3, -0.5, 0.3, 1.0),   # price-minded
    (-0.3, -0.5, 0.6, 1.0, 1.0, 1.0, -0.3, -0.8),   # feature-minded
)

#: The planted pattern's event types, in order.
PLANTED_SEQUENCE: tuple[str, ...] = ("support_ticket", "payment_failure", "complaint")


@dataclass(frozen=True)
class Heterogeneity:
    """The knobs and ground truth of the heterogeneous treatment run."""

    effects: Mapping[str, tuple[float, ...]] = field(default_factory=lambda: dict(DEFAULT_EFFECTS))
    offer_prefs: Mapping[str, tuple[float, ...]] = field(
        default_factory=lambda: dict(DEFAULT_OFFER_PREFS))
    offers: tuple[str, ...] = OFFERS
    offer_rate: float = 0.2  # offers presented per active customer-day
    taste_sd: float = 1.2  # sd of each personal taste factor, log-odds per unit loading
    taste_noise: float = 0.2  # sd of the personal noise per customer and offer
    leaver_rate: float = 0.0002  # active customers who start the planted pattern, per day

    def __post_init__(self) -> None:
        for action, row in self.effects.items():
            if len(row) != len(SEGMENTS) or not all(-1.0 <= e <= 1.0 for e in row):
                raise ValueError(f"effects of {action!r}: {len(SEGMENTS)} numbers in [-1, 1]")
        for seg, prefs in self.offer_prefs.items():
            if len(prefs) != len(self.offers):
                raise ValueError(f"offer preferences of {seg!r}: one per offer")

    def effect(self, action: str, segment: str) -> float:
        """The true effect of ``action`` on ``segment`` (0 for an action not in the table)."""
        row = self.effects.get(action)
        return 0.0 if row is None else row[SEGMENTS.index(segment)]

    @staticmethod
    def true_rr(effect: float, p: float = 0.0) -> float:
        """The relative churn risk over the horizon (``p``: the untreated churn rate).

        >>> Heterogeneity.true_rr(0.4), Heterogeneity.true_rr(-0.5, 0.2)
        (0.6, 1.4)
        """
        return 1.0 - effect if effect >= 0 else 1.0 + -effect * (1.0 - p)

    def best(self, allowed: tuple[str, ...], segment: str) -> str:
        """The action with the largest true effect among ``allowed`` (an oracle policy)."""
        return max(allowed, key=lambda a: self.effect(a, segment))

    def accept_logits(self, segments: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Log-odds of acceptance by segment code (``(n, len(offers))``)."""
        probs = np.array([self.offer_prefs[s] for s in SEGMENTS], dtype=np.float64)
        return np.asarray(np.log(probs / (1.0 - probs))[segments], dtype=np.float64)


def segment_codes(ticket_proneness: npt.NDArray[np.float64],
                  baseline: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Each customer's segment (index into :data:`SEGMENTS`) from static traits.

    >>> segment_codes(np.array([2.0, 1.0, 1.0, 1.0]), np.array([0.0, 0.5, -0.5, 0.0])).tolist()
    [0, 1, 2, 3]
    """
    return np.where(ticket_proneness > 1.6, 0,
                    np.where(baseline > 0.3, 1, np.where(baseline < -0.3, 2, 3))).astype(np.int64)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))
