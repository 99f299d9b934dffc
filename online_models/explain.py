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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

PLANS_MAX = 4096
_Plan = tuple[npt.NDArray[np.intp] | None, npt.NDArray[np.float64], npt.NDArray[np.float64],
              tuple[str, ...]]


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
    _plans: dict[tuple[str, ...], _Plan] = field(default_factory=dict, repr=False,
                                                 compare=False)

    @classmethod
    def of(cls, model: Any) -> LinearExplainer | None:
        """The explainer of ``model``, or None when it is not linear (module docstring)."""
        members = getattr(getattr(model, "raw", model), "members", None)
        if members is not None:  # an ensemble of linear models (online_models.ensemble)
            explainers = [cls.of(m) for m in members]
            if any(e is None for e in explainers):
                return None
            return MeanExplainer({}, {}, 0.0, None,
                                 members=tuple(e for e in explainers if e is not None))
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
        return [Contribution(name, v, c) for name, v, c in self._ranked(x, k)]

    def drivers(self, x: Mapping[str, float], k: int = 5) -> list[dict[str, Any]]:
        """:meth:`top` as the ``drivers`` field of a score record.

        >>> LinearExplainer({"a": 2.0}, {"a": 1.0}, 0.0).drivers({"a": 3.0, "b": 1.0})
        [{'feature': 'a', 'value': 3.0, 'contribution': 4.0}]
        """
        return [{"feature": name, "value": v, "contribution": c}
                for name, v, c in self._ranked(x, k)]

    def _ranked(self, x: Mapping[str, float], k: int) -> list[tuple[str, float, float]]:
        """(feature, value, contribution) of the ``k`` largest ``|fᵢ (x'ᵢ − cᵢ)|``, ties in
        input order: one numpy pass over the inputs, with the factors and centres laid out
        once per list of input names (a customer's names change only with its event types).
        Gives exactly what the per-feature version gave (``tests/unit/test_hot_path.py``)."""
        inputs = x if self.transform is None else self.transform(x)
        names = tuple(inputs)
        plan = self._plans.get(names)
        if plan is None:
            plan = self._plan(names)
        pick, factors, centres, kept = plan
        if not kept:
            return []
        values = np.fromiter(inputs.values(), dtype=np.float64, count=len(names))
        if pick is not None:
            values = values[pick]
        contribution = factors * (values - centres)
        order = np.argsort(-np.abs(contribution), kind="stable")[:k].tolist()
        cs, vs = contribution.tolist(), values.tolist()
        return [(kept[i], x.get(kept[i], vs[i]), cs[i]) for i in order]

    def _plan(self, names: tuple[str, ...]) -> _Plan:
        if len(self._plans) >= PLANS_MAX:
            self._plans.clear()
        index = [i for i, name in enumerate(names) if name in self.factors]
        kept = tuple(names[i] for i in index)
        plan = (None if len(index) == len(names) else np.array(index, dtype=np.intp),
                np.array([self.factors[n] for n in kept], dtype=np.float64),
                np.array([self.centres[n] for n in kept], dtype=np.float64), kept)
        self._plans[names] = plan
        return plan


@dataclass(frozen=True, slots=True)
class MeanExplainer(LinearExplainer):
    """Contributions to the mean of linear members' log-odds (:mod:`online_models.ensemble`):
    each feature's mean contribution over the members (a member that does not use a feature
    adds 0), so they still sum to the ensemble's log-odds less a constant.

    >>> a = LinearExplainer({"x": 2.0}, {"x": 0.0}, 0.0)
    >>> b = LinearExplainer({"x": 1.0, "y": -4.0}, {"x": 0.0, "y": 0.0}, 0.0)
    >>> MeanExplainer({}, {}, 0.0, members=(a, b)).drivers({"x": 1.0, "y": 1.0})
    [{'feature': 'y', 'value': 1.0, 'contribution': -2.0}, \
{'feature': 'x', 'value': 1.0, 'contribution': 1.5}]
    """

    members: tuple[LinearExplainer, ...] = ()

    def _ranked(self, x: Mapping[str, float], k: int) -> list[tuple[str, float, float]]:
        share = 1.0 / max(1, len(self.members))
        total: dict[str, float] = {}
        value: dict[str, float] = {}
        for member in self.members:
            for name, v, c in member._ranked(x, len(member.factors)):
                total[name] = total.get(name, 0.0) + share * c
                value.setdefault(name, v)
        order = sorted(total, key=lambda name: -abs(total[name]))[:k]
        return [(name, value[name], total[name]) for name in order]
