"""Why a score is what it is: per-feature contributions.

For a linear model — ``StandardScaler | LogisticRegression`` or
:class:`online_models.bayes.BayesLogistic`, optionally after a ``FuncTransformer`` step (the
default model's :func:`online_models.transforms.robust`) — the raw log-odds are exactly
``intercept + Σ fᵢ · (x'ᵢ − cᵢ)`` over the transformed inputs ``x'``, so each term is that
feature's contribution (in the raw model's log-odds: calibration is a monotone map applied
after, explanations are of the ranking). A driver's ``value`` is the worker's feature value
(days stay days); features the transform adds (shares) show their own value. Other models get
no contributions (an empty list) rather than a made-up story.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Contribution:
    feature: str
    value: float
    contribution: float  # in log-odds


def _pipeline_parts(model: Any) -> tuple[Callable[[Mapping[str, float]], Any] | None,
                                         list[Any]]:
    """(transform function or None, the remaining steps) of a model (calibration unwrapped)."""
    model = getattr(model, "raw", model)
    steps = getattr(model, "steps", None)
    parts = list(steps.values()) if steps else [model]
    transform = None
    if parts and hasattr(parts[0], "func") and len(parts) > 1:
        transform = parts[0].func
        parts = parts[1:]
    return transform, parts


def linear_parts(model: Any) -> tuple[Any, Any] | None:
    """The (scaler, logistic regression) of a linear pipeline, or None."""
    _, parts = _pipeline_parts(model)
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
    explainer = LinearExplainer.of(model)
    return [] if explainer is None else explainer.top(x, top)


@dataclass(frozen=True, slots=True)
class LinearExplainer:
    """Contributions of a frozen linear pipeline, precomputed for the hot path.

    Scorers hold a model that does not change until the next version is published, so the
    per-feature factor ``wᵢ / σᵢ`` and centre ``μᵢ`` are taken once per version; each
    explanation is then one multiply-subtract per feature. Gives exactly what
    :func:`contributions` gives.

    >>> from online_models.model import make_model
    >>> m = make_model()
    >>> for i in range(200):
    ...     m.learn_one({"tickets": float(i % 5), "sessions": float(i % 7)}, i % 5 > 2)
    >>> e = LinearExplainer.of(m)
    >>> x = {"tickets": 4.0, "sessions": 3.0}
    >>> [c.feature for c in e.top(x, 1)]
    ['tickets']
    >>> LinearExplainer.of(object()) is None
    True
    """

    factors: dict[str, float]
    centres: dict[str, float]
    intercept: float
    transform: Callable[[Mapping[str, float]], Any] | None = None

    @classmethod
    def of(cls, model: Any) -> LinearExplainer | None:
        """The explainer of ``model``, or None when it is not linear (module docstring)."""
        transform, parts = _pipeline_parts(model)
        if len(parts) == 1 and hasattr(parts[0], "linear_terms"):
            factors, centres, intercept = parts[0].linear_terms()
            return cls({n: f for n, f in factors.items() if f != 0.0}, centres, intercept,
                       transform)
        pair = linear_parts(model)
        if pair is None:
            return None
        scaler, linear = pair
        factors = {}
        centres = {}
        for name, weight in linear.weights.items():
            var = scaler.vars.get(name, 0.0)
            if weight == 0.0 or var <= 0.0:
                continue
            factors[name] = weight / math.sqrt(var)
            centres[name] = scaler.means.get(name, 0.0)
        return cls(factors, centres, float(getattr(linear, "intercept", 0.0)), transform)

    def top(self, x: Mapping[str, float], k: int = 5) -> list[Contribution]:
        """The ``k`` largest contributions (absolute, in log-odds) to the score of ``x``."""
        factors, centres = self.factors, self.centres
        inputs = x if self.transform is None else self.transform(x)
        parts = [(f * (v - centres[name]), name, x.get(name, v)) for name, v in inputs.items()
                 if (f := factors.get(name)) is not None]
        parts.sort(key=lambda p: -abs(p[0]))
        return [Contribution(name, v, c) for c, name, v in parts[:k]]

    def drivers(self, x: Mapping[str, float], k: int = 5) -> list[dict[str, Any]]:
        """:meth:`top` as the ``drivers`` field of a score record.

        >>> LinearExplainer({"a": 2.0}, {"a": 1.0}, 0.0).drivers({"a": 3.0, "b": 1.0})
        [{'feature': 'a', 'value': 3.0, 'contribution': 4.0}]
        """
        return [{"feature": c.feature, "value": c.value, "contribution": c.contribution}
                for c in self.top(x, k)]
