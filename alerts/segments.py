"""Behaviour segments: a tiny deterministic online k-means with named centroids (pure).

Each customer is placed by a few behaviour coordinates, all scaled to about [0, 1]:

=============  ===================================================================
activity       events per week (``ln 2 × count_7d``), as ``log1p(x) / log1p(50)``
regularity     share of the last 30 days with an event (``active_days_30d / 30``)
support        support tickets and complaints per month, ``log1p(x) / log1p(10)``
spend          spend per month (all value-carrying types), ``log1p(x) / log1p(500)``
tenure         ``log1p(tenure_days) / log1p(730)``
=============  ===================================================================

The centroids start at named archetypes (``power users``, ``steady regulars``, ``occasional
users``, ``fading``, ``support-heavy``, ``newcomers``) and follow the data by MacQueen updates
(step ``1 / n``, floored at ``min_rate`` so they keep adapting). A centroid keeps its name while it
moves, so labels stay readable; the same sequence of updates gives the same centroids.

>>> m = SegmentModel.initial()
>>> x = behaviour({"count_7d": 40.0, "active_days_30d": 28.0, "tenure_days": 400.0})
>>> m.assign(x)
'power users'
>>> m2, label = m.learn(x)
>>> label, m2.counts[0]
('power users', 1)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

LN2 = math.log(2.0)
Vector = tuple[float, float, float, float, float]
SUPPORT_TYPES = ("support_ticket", "complaint")

ARCHETYPES: tuple[tuple[str, Vector], ...] = (
    ("power users", (0.85, 0.85, 0.1, 0.5, 0.7)),
    ("steady regulars", (0.55, 0.55, 0.1, 0.3, 0.7)),
    ("occasional users", (0.3, 0.2, 0.1, 0.2, 0.7)),
    ("fading", (0.08, 0.05, 0.1, 0.1, 0.7)),
    ("support-heavy", (0.5, 0.5, 0.7, 0.3, 0.6)),
    ("newcomers", (0.4, 0.3, 0.1, 0.1, 0.2)),
)


def _scaled(x: float, top: float) -> float:
    return min(1.0, math.log1p(max(x, 0.0)) / math.log1p(top))


def behaviour(features: Mapping[str, float]) -> Vector:
    """Coordinates of a customer from its feature catalogue (:func:`catalogue` names).

    >>> behaviour({})
    (0.0, 0.0, 0.0, 0.0, 0.0)
    """
    activity = features.get("count_7d", 0.0) * LN2
    regularity = min(1.0, features.get("active_days_30d", 0.0) / 30.0)
    support = sum(features.get(f"count_30d.{t}", 0.0) for t in SUPPORT_TYPES) * LN2
    spend = sum(v for k, v in features.items() if k.startswith("value_30d.")) * LN2
    return (_scaled(activity, 50.0), regularity, _scaled(support, 10.0), _scaled(spend, 500.0),
            _scaled(features.get("tenure_days", 0.0), 730.0))


def spend_per_month(features: Mapping[str, float]) -> float:
    """Recent spend per month (all value-carrying event types).

    >>> round(spend_per_month({"value_30d.purchase": 43.28}), 2)
    30.0
    """
    return sum(v for k, v in features.items() if k.startswith("value_30d.")) * LN2


@dataclass(frozen=True, slots=True)
class SegmentModel:
    """Named centroids and how many customers each has absorbed."""

    names: tuple[str, ...]
    centroids: tuple[Vector, ...]
    counts: tuple[int, ...]
    min_rate: float = 0.002

    @staticmethod
    def initial(min_rate: float = 0.002) -> SegmentModel:
        return SegmentModel(tuple(n for n, _ in ARCHETYPES), tuple(c for _, c in ARCHETYPES),
                            (0,) * len(ARCHETYPES), min_rate)

    def nearest(self, x: Vector) -> int:
        best, best_d = 0, math.inf
        for i, c in enumerate(self.centroids):
            d = sum((a - b) ** 2 for a, b in zip(x, c, strict=True))
            if d < best_d:  # ties: the first archetype wins (deterministic)
                best, best_d = i, d
        return best

    def assign(self, x: Vector) -> str:
        """Label of the nearest centroid (no learning)."""
        return self.names[self.nearest(x)]

    def learn(self, x: Vector) -> tuple[SegmentModel, str]:
        """Assign, then move the winning centroid towards ``x``.

        >>> m = SegmentModel.initial()
        >>> x = (0.0, 0.0, 0.0, 0.0, 0.7)
        >>> for _ in range(3):
        ...     m, label = m.learn(x)
        >>> label, m.centroids[3][0] < 0.08
        ('fading', True)
        """
        i = self.nearest(x)
        n = self.counts[i] + 1
        rate = max(1.0 / (n + 1), self.min_rate)  # the archetype counts as one observation
        c = self.centroids[i]
        moved: Vector = tuple(a + rate * (b - a) for a, b in zip(c, x, strict=True))  # type: ignore[assignment]
        centroids = (*self.centroids[:i], moved, *self.centroids[i + 1:])
        counts = (*self.counts[:i], n, *self.counts[i + 1:])
        return replace(self, centroids=centroids, counts=counts), self.names[i]

    def to_json(self) -> dict[str, Any]:
        return {"names": list(self.names), "centroids": [list(c) for c in self.centroids],
                "counts": list(self.counts), "min_rate": self.min_rate}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> SegmentModel:
        """
        >>> m = SegmentModel.initial()
        >>> SegmentModel.from_json(m.to_json()) == m
        True
        """
        return SegmentModel(tuple(data["names"]),
                            tuple(tuple(float(v) for v in c) for c in data["centroids"]),  # type: ignore[misc]
                            tuple(int(n) for n in data["counts"]), float(data["min_rate"]))
