"""Calibrated churn probabilities: prior correction, online Platt scaling, ECE, reliability.

The learner weights churners and stayers equally, so a model's raw probability says "churn"
far more often than churn happens. Served scores are fixed in two monotone steps (ranking,
hence ROC AUC, is unchanged):

1. **Prior correction.** Training with class weights ``w₊`` and ``w₋`` adds ``log(w₊ / w₋)`` to
   the log-odds a model learns; :func:`prior_shift` gives the amount to take back.
2. **Online Platt scaling** (:class:`PlattCalibrator`) of the corrected log-odds ``z``:
   ``p = σ(a · z + b)``, fitted on delayed outcomes — each resolved snapshot's ``z`` as the
   model would have scored it when the snapshot was taken, and whether the customer churned.
   The fit uses the most recent pairs (recent behaviour of the model is what matters), a few
   Newton steps, shrunk towards the identity ``(a, b) = (1, 0)`` while evidence is thin. The
   learner keeps the pairs; a model version carries only ``(shift, a, b)``.

Measuring calibration: :func:`reliability` (predicted vs observed per bin of the predicted
probability), :func:`expected_calibration_error` and :func:`reliability_text` (the diagram in
a terminal). Everything here is pure.

>>> bins = reliability([0.05, 0.05, 0.15, 0.9], [False, False, True, True], bins=10)
>>> [(b.lo, b.n, round(b.predicted, 2), b.observed) for b in bins]
[(0.0, 2, 0.05, 0.0), (0.1, 1, 0.15, 1.0), (0.9, 1, 0.9, 1.0)]
>>> round(expected_calibration_error([0.05, 0.05, 0.15, 0.9], [False, False, True, True]), 4)
0.2625
>>> print(reliability_text(bins, width=10))
    p range        n  predicted  observed
  0.00-0.10        2      0.050     0.000  |o
  0.10-0.20        1      0.150     1.000  |#o########
  0.90-1.00        1      0.900     1.000  |########o#
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

Z_LIMIT = 30.0
WINDOW = 10_000  # most recent resolved pairs the calibration is fitted on
A_MAX = 5.0
PRIOR_STRENGTH = 20.0  # pseudo-observations pulling (a, b) towards the identity


def sigmoid(z: float) -> float:
    """Logistic function, safe at the extremes.

    >>> sigmoid(0.0), round(sigmoid(800.0), 3), round(sigmoid(-800.0), 3)
    (0.5, 1.0, 0.0)
    """
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def logit(p: float, eps: float = 1e-12) -> float:
    """Inverse of :func:`sigmoid` (clipped away from 0 and 1).

    >>> round(logit(0.5), 6), round(logit(sigmoid(2.0)), 6)
    (0.0, 2.0)
    """
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p / (1.0 - p))


def prior_shift(positive_weight: float, negative_weight: float) -> float:
    """Log-odds to add to a model trained with these class weights to undo them.

    >>> round(prior_shift(5.0, 0.5), 4)  # churners weighed 10x: take log(10) back
    -2.3026
    """
    return -math.log(positive_weight / negative_weight)


class PlattCalibrator:
    """``p = σ(a · z + b)`` fitted on the most recent (log-odds, outcome) pairs (module
    docstring): a window of exact pairs (no binning: a young model's log-odds can all lie
    within a hundredth of each other), Newton steps with numpy, ``a`` kept within
    ``[0, A_MAX]`` so that no fit of a degenerate window can saturate scores to 0 or 1.

    >>> import random
    >>> rnd = random.Random(0)
    >>> cal = PlattCalibrator()
    >>> cal(0.0)  # no evidence yet: the identity
    0.5
    >>> for _ in range(10000):  # a model whose log-odds are twice too confident
    ...     z = rnd.gauss(-3.0, 1.5)
    ...     cal.update(z, rnd.random() < sigmoid(0.5 * z))
    >>> cal.fit()
    >>> round(cal.a, 1), abs(round(cal.b, 1))
    (0.5, 0.0)
    """

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.a = 1.0
        self.b = 0.0
        self.zs = np.zeros(window)
        self.ys = np.zeros(window)
        self.ws = np.zeros(window)
        self.pos = 0
        self.seen = 0

    def __call__(self, z: float) -> float:
        return sigmoid(self.a * z + self.b)

    def update(self, z: float, y: bool, weight: float = 1.0) -> None:
        """One resolved pair (no refit; :meth:`fit` once per batch)."""
        if not math.isfinite(z):
            return
        i = self.pos
        self.zs[i] = min(max(z, -Z_LIMIT), Z_LIMIT)
        self.ys[i] = float(y)
        self.ws[i] = weight
        self.pos = (i + 1) % self.window
        self.seen += 1

    def fit(self, iterations: int = 12) -> None:
        """Newton steps on the penalised log likelihood of the window (a millisecond)."""
        n = min(self.seen, self.window)
        if n == 0:
            return
        z, y, w = self.zs[:n], self.ys[:n], self.ws[:n]
        lam = PRIOR_STRENGTH * 0.25  # curvature of PRIOR_STRENGTH pairs at p = 0.5

        def loss(a: float, b: float) -> float:
            m = np.clip(a * z + b, -35.0, 35.0)
            return float(w @ (np.logaddexp(0.0, m) - y * m)) + 0.5 * lam * (
                (a - 1.0) ** 2 + b * b)

        a, b = self.a, self.b
        for _ in range(iterations):
            q = 1.0 / (1.0 + np.exp(-np.clip(a * z + b, -35.0, 35.0)))
            r = w * (q - y)
            h = w * q * (1.0 - q)
            ga = float(r @ z) + lam * (a - 1.0)
            gb = float(r.sum()) + lam * b
            haa = float(h @ (z * z)) + lam
            hab = float(h @ z)
            hbb = float(h.sum()) + lam
            det = haa * hbb - hab * hab
            if det <= 1e-12:
                break
            da = max(-1.0, min(1.0, (hbb * ga - hab * gb) / det))  # damped: a few units a step
            db = max(-3.0, min(3.0, (haa * gb - hab * ga) / det))
            a = min(max(a - da, 0.0), A_MAX)
            b -= db
            if abs(da) < 1e-7 and abs(db) < 1e-7:
                break
        if math.isfinite(a) and math.isfinite(b) and loss(a, b) <= loss(self.a, self.b):
            self.a, self.b = a, b


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """Snapshots whose predicted probability fell in ``[lo, hi)``."""

    lo: float
    hi: float
    n: int
    predicted: float  # mean predicted probability
    observed: float  # share that churned


def reliability(ps: Sequence[float], ys: Sequence[bool], bins: int = 10) -> list[ReliabilityBin]:
    """Predicted vs observed churn per equal-width bin of the prediction (empty bins left out).

    The data of a reliability diagram; :func:`expected_calibration_error` sums its gaps.
    """
    n = [0] * bins
    psum = [0.0] * bins
    ysum = [0] * bins
    for p, y in zip(ps, ys, strict=True):
        if not math.isfinite(p):
            continue
        i = min(max(int(p * bins), 0), bins - 1)
        n[i] += 1
        psum[i] += p
        ysum[i] += int(y)
    return [ReliabilityBin(round(i / bins, 10), round((i + 1) / bins, 10), n[i],
                           psum[i] / n[i], ysum[i] / n[i]) for i in range(bins) if n[i]]


def expected_calibration_error(ps: Sequence[float], ys: Sequence[bool], bins: int = 10) -> float:
    """ECE: the count-weighted mean gap between predicted and observed churn over the bins
    of :func:`reliability` (NaN without predictions).

    >>> round(expected_calibration_error([0.1] * 10, [True] + [False] * 9), 9)
    0.0
    """
    table = reliability(ps, ys, bins)
    total = sum(b.n for b in table)
    if not total:
        return float("nan")
    return sum(b.n * abs(b.predicted - b.observed) for b in table) / total


def reliability_text(table: Iterable[ReliabilityBin], width: int = 40) -> str:
    """A reliability diagram for a terminal: per bin a bar of the observed churn share, ``o``
    marking the predicted probability (a calibrated model has ``o`` at the bar's end)."""
    lines = ["    p range        n  predicted  observed"]
    for b in table:
        bar = ["#"] * round(b.observed * width) + [" "] * (width - round(b.observed * width))
        mark = min(width - 1, max(0, round(b.predicted * width) - 1))
        if width:
            bar[mark] = "o"
        lines.append(f"  {b.lo:.2f}-{b.hi:.2f} {b.n:>8,} {b.predicted:>10.3f} "
                     f"{b.observed:>9.3f}  |{''.join(bar).rstrip()}")
    return "\n".join(lines)


def reliability_json(table: Iterable[ReliabilityBin]) -> list[dict[str, float]]:
    """The bins as plain data (status JSON, reports, dashboards).

    >>> reliability_json(reliability([0.25], [True], bins=4))
    [{'lo': 0.25, 'hi': 0.5, 'n': 1, 'predicted': 0.25, 'observed': 1.0}]
    """
    return [{"lo": b.lo, "hi": b.hi, "n": b.n, "predicted": b.predicted,
             "observed": b.observed} for b in table]
