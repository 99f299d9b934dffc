"""Online Bayesian logistic regression: second-order, no step size to tune.

A Gaussian belief over the weights (mean ``m``, covariance ``P``) updated by one Newton step
per example — the extended Kalman filter for the logistic likelihood (Laplace / assumed
density filtering): with ``p = σ(m · x)``, ``h = w p (1 − p)``,

    P ← P − h (P x)(P x)ᵀ / (1 + h xᵀ P x)        m ← m + w (y − p) P x

(``P`` after the update). Each feature gets its own, shrinking step size from the curvature
it has seen, so the learner does not care about feature scale or a learning rate: its only
setting is the prior variance of the weights (on standardised inputs, 1 is weak). Each input
is standardised by the mean and variance of its first ``warmup`` values, then frozen
(the belief is about fixed coordinates; a scaler that keeps moving would shift them under
it); a feature joins the model, with the prior, once placed. Standardised inputs are
winsorised at ±5 (tenure keeps growing past the range it was placed with). ``forget`` (default
0: the belief keeps all evidence, which converges to the batch fit on everything seen)
inflates the covariance per example so that old evidence fades, for drifting streams.

**Tempered evidence** (``temper``, default :data:`TEMPER` = 1/30). The learner learns one
snapshot per customer per observation interval (24 h) and each resolves a horizon (30 days)
later: about 30 snapshots of one customer describe the same month, nearly the same features
and the same outcome. Counted as 30 independent examples they make the belief ~30 times too
sure (and the steps too small, the fit too close to noise), so each example's evidence is
multiplied by ``temper`` = interval / horizon (a tempered likelihood: every customer-month
counts about once). Measured on recorded streams of three simulator scenarios
(``bench/learning_stream.py``, docs/learning.md): served AUC +0.02 to +0.07 over
``temper = 1``; it is not a step size: the belief still converges to the fit on all the
evidence, and the prior's weight fades as customers accumulate.

O(d²) per example with numpy (d ≈ 50: ~30 µs); prediction is a dot product over a frozen
weight table (the point estimate), as cheap as River's logistic regression.

>>> import random
>>> rnd = random.Random(0)
>>> model = BayesLogistic()
>>> for _ in range(3000):
...     a, b = rnd.gauss(0, 1), rnd.gauss(0, 100)  # b on another scale, irrelevant
...     model.learn_one({"a": a, "b": b}, rnd.random() < 1 / (1 + 2.718 ** -(2 * a - 1)))
>>> terms = model.linear_terms()
>>> round(terms[0]["a"] * 1.0, 0), abs(terms[0]["b"] * 100) < 0.3
(2.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from river import base

FloatArray = npt.NDArray[np.float64]
#: Evidence weight of one snapshot: observation interval / horizon at the defaults (24 h / 30 d).
TEMPER = 1.0 / 30.0
CLIP = 5.0  # standardised inputs are winsorised: a value far outside the placing sample
#             (tenure keeps growing) must not extrapolate the log-odds without bound


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class LogOddsClassifier(base.Classifier):
    """A binary classifier whose predictions follow from its ``log_odds(x)``."""

    def log_odds(self, x: Mapping[str, float]) -> float:
        raise NotImplementedError

    def predict_proba_one(self, x: dict[Hashable, Any], **kwargs: Any
                          ) -> dict[base.typing.ClfTarget, float]:
        p = _sigmoid(self.log_odds(cast(Mapping[str, float], x)))
        return {False: 1.0 - p, True: p}

    def predict_one(self, x: dict[Hashable, Any], **kwargs: Any) -> bool:
        return self.log_odds(cast(Mapping[str, float], x)) >= 0.0


class BayesLogistic(LogOddsClassifier):
    """River-style binary classifier (``learn_one`` / ``predict_proba_one``), see the module."""

    def __init__(self, prior_var: float = 1.0, forget: float = 0.0, warmup: int = 200,
                 temper: float = TEMPER) -> None:
        self.prior_var = prior_var
        self.forget = forget
        self.temper = temper
        self.warmup = warmup
        self.index: dict[str, int] = {}
        self.mean: FloatArray = np.zeros(1)  # slot 0: intercept
        self.cov: FloatArray = np.eye(1) * 10.0
        self.centre: FloatArray = np.zeros(1)
        self.scale: FloatArray = np.ones(1)
        self._sum: FloatArray = np.zeros(1)
        self._sq: FloatArray = np.zeros(1)
        self.seen: FloatArray = np.full(1, float(warmup))  # the intercept needs no placing
        self.active: FloatArray = np.ones(1)
        self._table: tuple[dict[str, tuple[float, float, float, float]], float] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_table"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("temper", 1.0)  # a belief pickled before tempering learns as it did
        self.__dict__.update(state)
        self._table = None

    def _grow(self, name: str) -> int:
        i = len(self.mean)
        self.index[name] = i
        self.mean = np.append(self.mean, 0.0)
        cov = np.zeros((i + 1, i + 1))
        cov[:i, :i] = self.cov
        cov[i, i] = self.prior_var
        self.cov = cov
        self.centre = np.append(self.centre, 0.0)
        self.scale = np.append(self.scale, 1.0)
        self._sum = np.append(self._sum, 0.0)
        self._sq = np.append(self._sq, 0.0)
        self.seen = np.append(self.seen, 0.0)
        self.active = np.append(self.active, 0.0)
        return i

    def _vector(self, x: Mapping[str, float], grow: bool) -> FloatArray:
        index = self.index
        if grow:
            for name in x:
                if name not in index:
                    self._grow(name)
        v = np.zeros(len(self.mean))
        v[0] = 1.0
        for name, value in x.items():
            i = index.get(name)
            if i is not None and math.isfinite(value):
                v[i] = value
        return v

    def learn_one(self, x: dict[Hashable, Any], y: base.typing.ClfTarget,
                  w: float = 1.0) -> None:
        self._table = None
        raw = self._vector(cast(Mapping[str, float], x), grow=True)
        waiting = self.seen < self.warmup
        if waiting.any():  # place each feature's coordinates from its first `warmup` values
            present = waiting
            self.seen[present] += 1
            self._sum[present] += raw[present]
            self._sq[present] += raw[present] ** 2
            joined = present & (self.seen >= self.warmup)
            if joined.any():
                mu = self._sum[joined] / self.seen[joined]
                sd = np.sqrt(np.maximum(self._sq[joined] / self.seen[joined] - mu * mu, 0.0))
                sd[sd < 1e-9] = 1.0
                self.centre[joined], self.scale[joined] = mu, sd
                self.active[joined] = 1.0
        v = np.clip((raw - self.centre) / self.scale, -CLIP, CLIP) * self.active
        v[0] = 1.0
        if self.forget > 0.0:
            self.cov *= 1.0 + self.forget
        px = self.cov @ v
        s = float(v @ px)
        p = _sigmoid(float(self.mean @ v))
        w *= self.temper
        h = w * p * (1.0 - p)
        denom = 1.0 + h * s
        self.mean = self.mean + (w * (float(y) - p) / denom) * px
        self.cov = self.cov - np.outer(px, px) * (h / denom)

    def linear_terms(self) -> tuple[dict[str, float], dict[str, float], float]:
        """(factor, centre, intercept) per feature: log-odds = intercept + Σ fᵢ (xᵢ − cᵢ)."""
        factors = {n: float(self.mean[i] / self.scale[i]) for n, i in self.index.items()
                   if self.active[i]}
        centres = {n: float(self.centre[i]) for n, i in self.index.items() if self.active[i]}
        return factors, centres, float(self.mean[0])

    def log_odds(self, x: Mapping[str, float]) -> float:
        """The point estimate's log-odds, inputs winsorised as in learning; a feature missing
        from ``x`` counts as 0, as in learning."""
        table = self._table
        if table is None:
            terms: dict[str, tuple[float, float, float, float]] = {}
            base = float(self.mean[0])
            for name, i in self.index.items():
                if not self.active[i]:
                    continue
                m, c, sd = float(self.mean[i]), float(self.centre[i]), float(self.scale[i])
                zero = m * min(max(-c / sd, -CLIP), CLIP)
                base += zero
                terms[name] = (m, c, sd, zero)
            table = self._table = (terms, base)
        terms_now, z = table
        for name, value in x.items():
            t = terms_now.get(name)
            if t is not None and math.isfinite(value):
                z += t[0] * min(max((value - t[1]) / t[2], -CLIP), CLIP) - t[3]
        return z
