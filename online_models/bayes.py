"""Online Bayesian logistic regression: second-order, no step size to tune.

A Gaussian belief over the weights (mean ``m``, covariance ``P``) updated by one Newton step
per example — the extended Kalman filter for the logistic likelihood (Laplace / assumed
density filtering): with ``p = σ(m · x)``, ``h = w p (1 − p)``,

    P ← P − h (P x)(P x)ᵀ / (1 + h xᵀ P x)        m ← m + w (y − p) P x

(``P`` after the update). Each feature gets its own, shrinking step size from the curvature
it has seen, so the learner does not care about feature scale or a learning rate: its only
setting is the prior variance of the weights (on standardised inputs, 1 is weak). Inputs are
standardised by running means and variances frozen after ``warmup`` examples (the belief is
about fixed coordinates; a scaler that keeps moving would shift them under it). New features
join as they appear, with the prior. ``forget`` (default 0: the belief keeps all evidence,
which converges to the batch fit on everything seen) inflates the covariance per example so
that old evidence fades, for drifting streams.

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


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class BayesLogistic(base.Classifier):
    """River-style binary classifier (``learn_one`` / ``predict_proba_one``), see the module."""

    def __init__(self, prior_var: float = 1.0, forget: float = 0.0, warmup: int = 500) -> None:
        self.prior_var = prior_var
        self.forget = forget
        self.warmup = warmup
        self.index: dict[str, int] = {}
        self.mean: FloatArray = np.zeros(1)  # slot 0: intercept
        self.cov: FloatArray = np.eye(1) * 10.0
        self.centre: FloatArray = np.zeros(1)
        self.scale: FloatArray = np.ones(1)
        self._sum: FloatArray = np.zeros(1)
        self._sq: FloatArray = np.zeros(1)
        self.n = 0
        self._table: tuple[dict[str, float], float] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_table"}

    def __setstate__(self, state: dict[str, Any]) -> None:
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
        if self.n < self.warmup:  # fix the coordinates: running moments until warm
            self._sum += raw
            self._sq += raw * raw
            self.n += 1
            mu = self._sum / self.n
            sd = np.sqrt(np.maximum(self._sq / self.n - mu * mu, 0.0))
            sd[sd < 1e-9] = 1.0
            mu[0], sd[0] = 0.0, 1.0
            self.centre, self.scale = mu, sd
            if self.n < self.warmup:
                return  # the first examples only place the coordinates
        v = (raw - self.centre) / self.scale
        v[0] = 1.0
        if self.forget > 0.0:
            self.cov *= 1.0 + self.forget
        px = self.cov @ v
        s = float(v @ px)
        p = _sigmoid(float(self.mean @ v))
        h = w * p * (1.0 - p)
        denom = 1.0 + h * s
        self.mean = self.mean + (w * (float(y) - p) / denom) * px
        self.cov = self.cov - np.outer(px, px) * (h / denom)

    def linear_terms(self) -> tuple[dict[str, float], dict[str, float], float]:
        """(factor, centre, intercept) per feature: log-odds = intercept + Σ fᵢ (xᵢ − cᵢ)."""
        factors = {n: float(self.mean[i] / self.scale[i]) for n, i in self.index.items()}
        centres = {n: float(self.centre[i]) for n, i in self.index.items()}
        return factors, centres, float(self.mean[0])

    def log_odds(self, x: Mapping[str, float]) -> float:
        """The point estimate's log-odds; a feature missing from ``x`` counts as 0, as in
        learning."""
        table = self._table
        if table is None:
            factors, centres, intercept = self.linear_terms()
            base = intercept - sum(f * centres[n] for n, f in factors.items())
            table = self._table = (factors, base)
        factors_now, z = table
        for name, value in x.items():
            f = factors_now.get(name)
            if f is not None and math.isfinite(value):
                z += f * value
        return z

    def predict_proba_one(self, x: dict[Hashable, Any], **kwargs: Any
                          ) -> dict[base.typing.ClfTarget, float]:
        p = _sigmoid(self.log_odds(cast(Mapping[str, float], x)))
        return {False: 1.0 - p, True: p}

    def predict_one(self, x: dict[Hashable, Any], **kwargs: Any) -> bool:
        return self.log_odds(cast(Mapping[str, float], x)) >= 0.0
