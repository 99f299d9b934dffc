"""Why a score is what it is: per-feature contributions.

For the default ``StandardScaler | LogisticRegression`` the log-odds are exactly
``intercept + Σ wᵢ · (xᵢ − μᵢ) / σᵢ``, so each term is that feature's contribution. Other models
get no contributions (an empty list) rather than a made-up story.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Contribution:
    feature: str
    value: float
    contribution: float  # in log-odds


def linear_parts(model: Any) -> tuple[Any, Any] | None:
    """The (scaler, logistic regression) of a linear pipeline, or None."""
    steps = getattr(model, "steps", None)
    if not steps:
        return None
    parts = list(steps.values())
    if len(parts) != 2:
        return None
    scaler, linear = parts
    if not hasattr(scaler, "means") or not hasattr(linear, "weights"):
        return None
    return scaler, linear


def contributions(model: Any, x: Mapping[str, float], top: int = 5) -> list[Contribution]:
    """The ``top`` features that moved this score most, largest absolute contribution first.

    >>> from online_models.model import make_model
    >>> m = make_model()
    >>> for i in range(200):
    ...     m.learn_one({"tickets": float(i % 5), "sessions": float(i % 7)}, i % 5 > 2)
    >>> [c.feature for c in contributions(m, {"tickets": 4.0, "sessions": 3.0}, top=1)]
    ['tickets']
    """
    parts = linear_parts(model)
    if parts is None:
        return []
    scaler, linear = parts
    out = []
    for name, value in x.items():
        weight = linear.weights.get(name, 0.0)
        var = scaler.vars.get(name, 0.0)
        if weight == 0.0 or var <= 0.0:
            continue
        scaled = (value - scaler.means.get(name, 0.0)) / math.sqrt(var)
        out.append(Contribution(name, value, weight * scaled))
    out.sort(key=lambda c: -abs(c.contribution))
    return out[:top]
