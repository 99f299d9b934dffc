"""Scores and drivers of a whole batch of feature vectors at once (the worker's hot path).

The worker scores every customer a batch touched with one model version. Per row, River's
``predict_proba_one`` walks dicts (scaler, dot product: ~8 µs at 50 features) and the
:class:`~online_models.explain.LinearExplainer` lays out the same row again for the drivers
(~8 µs). :class:`BatchScorer` does both for all rows together: the rows are grouped by their
list of input names (a customer's names change only with its event types, so a batch has a
handful of groups), each group becomes one matrix, and per group one pass of numpy gives

* the drivers: each feature's contribution ``fᵢ · (x'ᵢ − cᵢ)`` and the ``k`` largest by
  absolute value, ties in input order — the very arithmetic of
  :meth:`LinearExplainer.drivers <online_models.explain.LinearExplainer.drivers>`, element by
  element, so the drivers are equal to the last bit;
* the raw log-odds: for ``StandardScaler | LogisticRegression`` the scaled inputs
  ``(xᵢ − μᵢ) / √σ²ᵢ`` times the weights plus the intercept (River's formula; the sum runs in
  another order, so a score may differ from River's in the last bits), for
  :class:`~online_models.bayes.BayesLogistic` its winsorised form (as its ``log_odds``).

A row's terms are added column by column in the plan's order (not by a matrix product nor
numpy's row sums, whose order of additions, and so the last bits, change with the matrix's
shape): a row scores the same to the last bit in any batch, so a redelivered event's
``score_id`` always carries the same score. The probability and the
calibration (:class:`~online_models.served.CalibratedModel`) then run per row through the
model's own scalar functions. ``tests/unit/test_score_batch.py`` holds the scores to River's
within 1e-12 and the drivers equal.

Models without a linear form (trees, forests, an ensemble) get no :class:`BatchScorer`
(:meth:`BatchScorer.of` returns None): the caller scores them row by row as before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt
from river import compose, linear_model, preprocessing

from online_models.bayes import CLIP, BayesLogistic
from online_models.bayes import _sigmoid as bayes_sigmoid
from online_models.calibration import logit
from online_models.served import CalibratedModel

FloatArray = npt.NDArray[np.float64]
Transform = Callable[[Mapping[str, float]], Mapping[str, float]]
Driver = dict[str, Any]
PLANS_MAX = 4096


@dataclass(frozen=True, slots=True)
class _Plan:
    """Where one list of input names goes in the batch matrix: the positions of the inputs the
    model uses (``None``: all of them) and their columns."""

    src: npt.NDArray[np.intp] | None
    dst: npt.NDArray[np.intp]


def uncalibrated(model: Any) -> tuple[Any, Callable[[float], float] | None]:
    """``model`` without its :class:`CalibratedModel` wrapper, and the wrapper's map from the
    raw probability to the served one (None when there is no wrapper)."""
    if not isinstance(model, CalibratedModel):
        return model, None
    shift, calibrate = model.shift, model.calibrate

    def served(p: float) -> float:
        return calibrate(logit(p) + shift)
    return model.raw, served


@dataclass
class BatchScorer:
    """Scores and drivers of one frozen model version (module docstring).

    ``terms`` gives, per input name the model uses, ``(factor, centre, a, b, c)``; a row's
    raw log-odds are ``base + Σ a·clip((x − b) / c)`` for the winsorised model (``clip``
    set) and ``base + Σ a·((x − b) / c)`` else; ``proba`` turns them into the raw
    model's probability and ``served`` that into the served score.

    >>> from online_models.model import make_model
    >>> m = make_model()
    >>> for i in range(300):
    ...     m.learn_one({"tickets": float(i % 5), "sessions": float(i % 7)}, i % 5 > 2)
    >>> scorer = BatchScorer.of(m)
    >>> xs = [{"tickets": 4.0, "sessions": 3.0}, {"sessions": 1.0, "tickets": 0.0}]
    >>> scores, drivers = scorer.score(xs, 1)
    >>> [abs(s - m.predict_proba_one(x)[True]) < 1e-12 for s, x in zip(scores, xs)]
    [True, True]
    >>> [d[0]["feature"] for d in drivers]
    ['tickets', 'tickets']
    >>> BatchScorer.of(object()) is None
    True
    """

    terms: dict[str, tuple[float, float, float, float, float]]
    base: float
    proba: Callable[[float], float]
    served: Callable[[float], float] | None = None
    transform: Transform | None = None
    clip: float | None = None
    _plans: dict[tuple[str, ...], _Plan] = field(default_factory=dict, repr=False)
    _columns: dict[str, int] = field(init=False, repr=False)
    _names: list[str] = field(init=False, repr=False)
    _t: list[FloatArray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._names = list(self.terms)
        self._columns = {name: j for j, name in enumerate(self._names)}
        self._t = [np.array([t[j] for t in self.terms.values()], dtype=np.float64)
                   for j in range(5)]

    @classmethod
    def of(cls, model: Any) -> BatchScorer | None:
        """The scorer of ``model`` (a River linear pipeline or a Bayesian logistic model,
        optionally after a ``FuncTransformer`` and inside a :class:`CalibratedModel`), or
        None when it has no linear form."""
        raw, served = uncalibrated(model)
        if not isinstance(raw, compose.Pipeline) and not isinstance(raw, BayesLogistic):
            return None
        steps: list[Any] = list(raw.steps.values()) if isinstance(raw, compose.Pipeline) \
            else [raw]
        transform: Transform | None = None
        if len(steps) > 1 and type(steps[0]) is compose.FuncTransformer:
            func: Any = steps[0].func
            transform = func
            steps = steps[1:]
        if len(steps) == 1 and type(steps[0]) is BayesLogistic:
            return cls._bayes(steps[0], served, transform)
        if len(steps) != 2:
            return None
        scaler, glm = steps
        if type(scaler) is not preprocessing.StandardScaler or not scaler.with_std or \
                scaler.window_size is not None or type(glm) is not linear_model.LogisticRegression:
            return None
        terms = {}
        for name, weight in glm.weights.items():
            var = scaler.vars.get(name, 0.0)
            if weight == 0.0 or var <= 0.0:  # contributes 0 (as LinearExplainer leaves out)
                continue
            mean = scaler.means.get(name, 0.0)
            terms[name] = (weight / math.sqrt(var), mean, weight, mean, var ** 0.5)
        return cls(terms, float(glm.intercept), glm.loss.mean_func, served, transform)

    @classmethod
    def _bayes(cls, model: BayesLogistic, served: Callable[[float], float] | None,
               transform: Transform | None) -> BatchScorer:
        factors, centres, intercept = model.linear_terms()
        base = intercept
        terms = {}
        for name, i in model.index.items():
            if not model.active[i]:
                continue
            m, c, sd = float(model.mean[i]), float(model.centre[i]), float(model.scale[i])
            base += m * min(max(-c / sd, -CLIP), CLIP)  # a missing input counts as 0
            f = factors[name]
            if f != 0.0:  # (m = 0: no contribution, to drivers nor to the score)
                terms[name] = (f, centres[name], m, c, sd)
        return cls(terms, base, bayes_sigmoid, served, transform, CLIP)

    def score(self, xs: Sequence[Mapping[str, float]], top: int
              ) -> tuple[list[float], list[list[Driver]]]:
        """The served score of every row and its ``top`` drivers (module docstring)."""
        n = len(xs)
        transform = self.transform
        inputs = xs if transform is None else [transform(x) for x in xs]
        values, present = self._matrix(inputs)
        proba, served = self.proba, self.served
        scores = []
        for z in self._log_odds(values, present):
            p = float(proba(z))
            scores.append(served(p) if served is not None else p)
        if not self._names or top <= 0:
            return scores, [[] for _ in range(n)]
        return scores, self._drivers(values, present, inputs, xs, top)

    def _matrix(self, inputs: Sequence[Mapping[str, float]]
                ) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """The rows' inputs in the model's columns (0 where absent) and which are present:
        one block per list of input names."""
        n = len(inputs)
        values = np.zeros((n, len(self._names)))
        present = np.zeros((n, len(self._names)), dtype=bool)
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, row in enumerate(inputs):
            key = tuple(row)
            group = groups.get(key)
            if group is None:
                groups[key] = [i]
            else:
                group.append(i)
        for names, rows in groups.items():
            plan = self._plans.get(names)
            if plan is None:
                plan = self._plan(names)
            if not len(plan.dst):
                continue
            width = len(names)
            block = np.fromiter(chain.from_iterable(inputs[i].values() for i in rows),
                                dtype=np.float64, count=len(rows) * width
                                ).reshape(len(rows), width)
            at = np.array(rows, dtype=np.intp)[:, None]
            values[at, plan.dst] = block if plan.src is None else block[:, plan.src]
            present[at, plan.dst] = True
        return values, present

    def _log_odds(self, values: FloatArray, present: npt.NDArray[np.bool_]) -> list[float]:
        """Raw log-odds per row: its terms added column by column in the model's order (not
        by a matrix product nor numpy's row sums, whose order of additions, and so the last
        bits, change with the matrix's shape); an absent input adds nothing."""
        _, _, a, b, c = self._t
        scaled = (values - b) / c
        if self.clip is not None:  # BayesLogistic.log_odds: winsorised, non-finite = absent
            clip = self.clip
            zero = a * np.clip(-b / c, -clip, clip)
            terms = np.where(present & np.isfinite(values),
                             a * np.clip(scaled, -clip, clip) - zero, 0.0)
        else:
            terms = np.where(present, a * scaled, 0.0)
        total = np.full(len(values), self.base)
        for j in range(terms.shape[1]):
            total += terms[:, j]
        z: list[float] = total.tolist()
        return z

    def _drivers(self, values: FloatArray, present: npt.NDArray[np.bool_],
                 inputs: Sequence[Mapping[str, float]], xs: Sequence[Mapping[str, float]],
                 top: int) -> list[list[Driver]]:
        """The ``top`` largest ``|fᵢ (x'ᵢ − cᵢ)|`` per row, as
        :meth:`LinearExplainer.drivers <online_models.explain.LinearExplainer.drivers>`:
        there, ties keep the row's input order; here the columns are in the model's order, so
        a row with a tie among its ``top + 1`` largest (or a non-finite contribution) is
        ranked on its own, in its input order."""
        factors, centres = self._t[0], self._t[1]
        contribution = factors * (values - centres)
        key = np.where(present, -np.abs(contribution), np.inf)
        width = min(top + 1, key.shape[1])
        order = np.argsort(key, axis=1, kind="stable")[:, :width]
        ranked = np.take_along_axis(key, order, axis=1)
        counts = present.sum(axis=1)
        tied = ((ranked[:, 1:] == ranked[:, :-1]) & np.isfinite(ranked[:, 1:])).any(axis=1)
        odd = ~np.isfinite(np.where(present, contribution, 0.0)).all(axis=1)
        alone = (tied | odd).tolist()
        order_l = order[:, :top].tolist()
        cs = np.take_along_axis(contribution, order[:, :top], axis=1).tolist()
        vs = np.take_along_axis(values, order[:, :top], axis=1).tolist()
        names = self._names
        out: list[list[Driver]] = []
        for i, (x, k) in enumerate(zip(xs, counts.tolist(), strict=True)):
            if alone[i]:
                out.append(self._row_drivers(inputs[i], x, top))
                continue
            c, v = cs[i], vs[i]
            out.append([{"feature": (name := names[j]), "value": x.get(name, v[r]),
                         "contribution": c[r]}
                        for r, j in enumerate(order_l[i][:k])])
        return out

    def _row_drivers(self, inputs: Mapping[str, float], x: Mapping[str, float],
                     top: int) -> list[Driver]:
        """One row's drivers in its input order (ties and non-finite values)."""
        terms = self.terms
        parts = [(name, v, t[0] * (v - t[1])) for name, v in inputs.items()
                 if (t := terms.get(name)) is not None]
        order = np.argsort(-np.abs(np.array([c for _, _, c in parts], dtype=np.float64)),
                           kind="stable")[:top].tolist()
        return [{"feature": parts[j][0], "value": x.get(parts[j][0], parts[j][1]),
                 "contribution": parts[j][2]} for j in order]

    def _plan(self, names: tuple[str, ...]) -> _Plan:
        if len(self._plans) >= PLANS_MAX:
            self._plans.clear()
        columns = self._columns
        index = [i for i, name in enumerate(names) if name in columns]
        plan = _Plan(None if len(index) == len(names) else np.array(index, dtype=np.intp),
                     np.array([columns[names[i]] for i in index], dtype=np.intp))
        self._plans[names] = plan
        return plan
