"""The batch method analysts use today, as the backtest's point of comparison.

Logistic regression refit monthly on the same features, at monthly observation dates:

* **Observation dates** are the first instant of each calendar month (UTC). At each date ``d``
  every customer who is active (has events before ``d`` and has not churned, or has come back)
  contributes one row: its feature vector at ``d`` (the very features the online model sees,
  :func:`online_models.features.feature_vector`, computed from events before ``d`` only) and
  the outcome "churned within (d, d + H]".
* **Refit** at each date ``d`` on every earlier row whose outcome window has closed
  (``t + H <= d``): an analyst cannot use a row whose outcome is still unknown. Rows are
  weighted so churners and stayers carry equal total weight (the same balancing the online
  learner uses, so both models' probabilities mean the same thing at the threshold).
* **Score** the rows of date ``d`` with the model fitted at ``d``. Dates before the first fit
  (not enough closed rows yet, or a single class) get no baseline scores.

The fit is L2-regularised logistic regression on standardised features by Newton's method
(IRLS): deterministic, a handful of iterations on tens of thousands of rows. Missing features
(an event type the customer never had) are 0, which is what the log-transformed counts are.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
DAY_S = 86400.0


def month_starts(first: float, last: float) -> list[float]:
    """Epoch seconds of every UTC month start in ``(first, last]``.

    >>> jan1 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
    >>> [dt.datetime.fromtimestamp(t, dt.UTC).date().isoformat()
    ...  for t in month_starts(jan1 - 1, jan1 + 70 * DAY_S)]
    ['2026-01-01', '2026-02-01', '2026-03-01']
    """
    start = dt.datetime.fromtimestamp(first, dt.UTC)
    year, month = start.year, start.month
    out: list[float] = []
    while True:
        t = dt.datetime(year, month, 1, tzinfo=dt.UTC).timestamp()
        if t > last:
            return out
        if t > first:
            out.append(t)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


@dataclass
class LogisticFit:
    """A fitted model: ``p = σ(b + w · (x − μ) / σ)`` over ``names``."""

    names: list[str]
    mean: FloatArray
    scale: FloatArray
    weights: FloatArray
    intercept: float
    iterations: int = 0

    def predict(self, x: FloatArray) -> FloatArray:
        z = ((x - self.mean) / self.scale) @ self.weights + self.intercept
        out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))
        return out


def fit_logistic(x: FloatArray, y: npt.NDArray[np.bool_], names: list[str],
                 l2: float = 1.0, balanced: bool = True, max_iter: int = 50,
                 tol: float = 1e-8) -> LogisticFit:
    """L2-regularised logistic regression by Newton's method (intercept not penalised).

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 2))
    >>> y = rng.random(2000) < 1 / (1 + np.exp(-(2 * x[:, 0] - 1)))
    >>> fit = fit_logistic(x, y, ["a", "b"], l2=0.0, balanced=False)
    >>> round(float(fit.weights[0]), 1), abs(float(fit.weights[1])) < 0.1, round(fit.intercept, 1)
    (2.0, True, -1.0)
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} rows but {y.shape[0]} outcomes")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale <= 1e-12] = 1.0
    z = (x - mean) / scale
    design = np.hstack([z, np.ones((z.shape[0], 1))])
    yf = y.astype(np.float64)
    if balanced and 0 < yf.sum() < yf.size:
        share = yf.mean()
        sample_w = np.where(y, 0.5 / share, 0.5 / (1 - share))
    else:
        sample_w = np.ones_like(yf)
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0
    beta = np.zeros(design.shape[1])
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        eta = np.clip(design @ beta, -35.0, 35.0)
        mu = 1.0 / (1.0 + np.exp(-eta))
        grad = design.T @ (sample_w * (mu - yf)) + penalty * beta
        hess = (design * (sample_w * mu * (1 - mu))[:, None]).T @ design + np.diag(penalty)
        hess += np.eye(hess.shape[0]) * 1e-9
        step = np.linalg.solve(hess, grad)
        beta -= step
        if float(np.max(np.abs(step))) < tol:
            break
    return LogisticFit(list(names), mean, scale, beta[:-1].copy(), float(beta[-1]), it)


@dataclass(frozen=True, slots=True)
class BaselineRow:
    """One customer at one monthly observation date."""

    customer_id: str
    t: float
    x: Mapping[str, float]
    churned: bool  # churned within (t, t + H]


def matrix(rows: Sequence[BaselineRow], names: list[str]) -> FloatArray:
    """Rows as a dense matrix over ``names`` (missing features are 0)."""
    out = np.zeros((len(rows), len(names)))
    index = {n: i for i, n in enumerate(names)}
    for r, row in enumerate(rows):
        for name, value in row.x.items():
            i = index.get(name)
            if i is not None and math.isfinite(value):
                out[r, i] = value
    return out


@dataclass
class BaselineResult:
    """Baseline scores per observation date and what each fit saw."""

    scored: list[tuple[BaselineRow, float]] = field(default_factory=list)
    fits: list[dict[str, float]] = field(default_factory=list)
    first_scored: float | None = None


def run_baseline(rows: Sequence[BaselineRow], horizon_s: float, l2: float = 1.0,
                 min_rows: int = 200) -> BaselineResult:
    """Refit at every observation date on closed rows, score that date's rows.

    >>> rng = np.random.default_rng(1)
    >>> rows = [BaselineRow(f"c{i}", float(d * 30), {"a": float(a)}, bool(a + rng.normal() > 1))
    ...         for d in range(4) for i, a in enumerate(rng.normal(size=300))]
    >>> res = run_baseline(rows, horizon_s=30.0)
    >>> res.first_scored, len(res.scored), len(res.fits)
    (30.0, 900, 3)
    """
    dates = sorted({r.t for r in rows})
    by_date: dict[float, list[BaselineRow]] = {d: [] for d in dates}
    for r in rows:
        by_date[r.t].append(r)
    names = sorted({name for r in rows for name in r.x})
    result = BaselineResult()
    for d in dates:
        train = [r for r in rows if r.t + horizon_s <= d]
        y = np.array([r.churned for r in train], dtype=np.bool_)
        if len(train) < min_rows or y.all() or not y.any():
            continue
        fit = fit_logistic(matrix(train, names), y, names, l2=l2)
        now = by_date[d]
        probs = fit.predict(matrix(now, names))
        result.scored.extend(zip(now, (float(p) for p in probs), strict=True))
        result.fits.append({"t": d, "train_rows": float(len(train)),
                            "train_positives": float(y.sum()), "iterations": float(fit.iterations)})
        if result.first_scored is None:
            result.first_scored = d
    return result
