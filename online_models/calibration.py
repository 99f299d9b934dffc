"""Calibrated churn probabilities: prior correction, online Platt scaling, ECE, reliability.

The learner weights churners and stayers equally, so a model's raw probability says "churn"
far more often than churn happens. Served scores are fixed in two monotone steps (ranking,
hence ROC AUC, is unchanged):

1. **Prior correction.** Training with class weights ``w₊`` and ``w₋`` adds ``log(w₊ / w₋)`` to
   the log-odds a model learns; :func:`prior_shift` gives the amount to take back.
2. **Online Platt scaling** (:class:`PlattCalibrator`) of the corrected log-odds ``z``: ``p =
   σ(a · z + b)``, fitted on delayed outcomes: the last ``WINDOW`` resolved snapshots' log-odds
   from the model of their learner step (or, with ``calibration_window.RESCORE``, re-scored at
   every step by the version about to be published, so that a version's calibration depends on
   its raw model and the window only, not on how often the learner stepped; off by default,
   docs/alerts.md), and whether the customer churned. A few Newton steps, shrunk while evidence
   is thin towards *no skill*: ``a = 0`` and everyone at the observed base rate (a Beta(½, ½)
   estimate of the window's churn share), with the weight of ``PRIOR_STRENGTH`` outcomes. A
   young model must earn its spread from resolved outcomes; until then it serves (close to) the
   base rate, never 0.5 or 1.0. Log-odds beyond the range the fit saw are clamped to it (Platt
   does not extrapolate past its evidence); with ``TAIL_CAP`` (and the re-scored window) the
   top eighth of the range is capped by the churn its own customers showed
   (:mod:`online_models.calibration_tail`: ``min(Platt, cap)``, still strictly increasing; off
   by default). A model version carries only ``(shift, a, b)``, the clamp range, the tail knots
   and the evidence counts (:meth:`online_models.served.CalibratedModel.set_calibration`).
3. **Calibrated or not.** A version whose calibration rests on fewer than
   ``MIN_CLASS_OUTCOMES`` churners or stayers (about ten per fitted parameter, the usual
   events-per-variable rule for a logistic fit) is *calibrating*: its scores are flagged
   ``calibrated: false`` on the score record, the alerter does not act on them and the
   dashboard says so (:func:`is_calibrated`).

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

from online_models.calibration_tail import FloatArray, Tail, UIntArray, tail_cap, tail_knots

Z_LIMIT = 30.0
WINDOW = 10_000  # most recent resolved pairs the calibration is fitted on
A_MAX = 5.0
PRIOR_STRENGTH = 20.0  # pseudo-observations pulling (a, b) towards no skill at the base rate
MIN_CLASS_OUTCOMES = 20  # churners and stayers a calibration needs to count as calibrated
#: The tail cap (online_models/calibration_tail.py) is off by default: on three simulated
#: years it brought the top bins to their observed churn (p >= 0.5 served 0.53-0.56 for
#: 0.49-0.54 observed, was 0.64-0.65 for 0.44-0.52) but cut the median warning of the
#: budget's warned churners by 0.3-1.2 days (seed 1: 15.0 -> 13.8, under issue 10's 14).
TAIL_CAP = False


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
    >>> cal(0.0)  # no evidence yet: the identity (and not calibrated)
    0.5
    >>> for _ in range(10000):  # a model whose log-odds are twice too confident
    ...     z = rnd.gauss(-3.0, 1.5)
    ...     cal.update(z, rnd.random() < sigmoid(0.5 * z))
    >>> cal.fit()
    >>> round(cal.a, 1), abs(round(cal.b, 1))
    (0.5, 0.0)

    Thin evidence: a dozen outcomes of a model that claims certainty (log-odds ±25; one of
    the three it was sure of churned) give probabilities near what was observed, not 0 or 1.

    >>> cal = PlattCalibrator()
    >>> for i in range(12):
    ...     cal.update(25.0 if i % 4 == 0 else -25.0, i == 4)
    >>> cal.fit()
    >>> round(cal(25.0), 2), round(cal(-25.0), 2), (cal.churners, cal.stayers)
    (0.39, 0.06, (1, 11))
    """

    def __init__(self, window: int = WINDOW) -> None:
        self.window = window
        self.a = 1.0
        self.b = 0.0
        self.z_lo = -Z_LIMIT
        self.z_hi = Z_LIMIT
        self.churners = 0  # outcomes of each class in the window of the last fit
        self.stayers = 0
        self.tail: Tail | None = None
        self.zs = np.zeros(window)
        self.ys = np.zeros(window)
        self.ws = np.zeros(window)
        self.pos = 0
        self.seen = 0

    def __setstate__(self, state: dict[str, object]) -> None:
        """Calibrators pickled before the clamp and the counts existed load with defaults."""
        self.__dict__.update({"z_lo": -Z_LIMIT, "z_hi": Z_LIMIT, "churners": 0,
                              "stayers": 0, "tail": None, **state})

    def __call__(self, z: float) -> float:
        return calibrated(z, self.a, self.b, self.z_lo, self.z_hi, self.tail)

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

    def update_many(self, zs: Sequence[float], ys: Sequence[bool], weights: Sequence[float]
                    ) -> None:
        """:meth:`update` of each pair in order, at once (the learner's batches).

        >>> a, b = PlattCalibrator(window=4), PlattCalibrator(window=4)
        >>> pairs = [(1.0, True, 1.0), (float("nan"), False, 1.0), (-2.0, False, 3.0),
        ...          (90.0, True, 1.0), (0.5, False, 1.0), (0.1, True, 2.0)]
        >>> for z, y, w in pairs:
        ...     a.update(z, y, w)
        >>> b.update_many(*map(list, zip(*pairs)))
        >>> all((a.zs == b.zs).all() and (a.ys == b.ys).all() and (a.ws == b.ws).all()
        ...     for _ in [0]), (a.pos, a.seen) == (b.pos, b.seen)
        (True, True)
        """
        z = np.asarray(zs, dtype=np.float64)
        keep = np.isfinite(z)
        n = int(keep.sum())
        if n == 0:
            return
        last = slice(max(0, n - self.window), n)  # older pairs would be overwritten
        at = ((self.pos + np.arange(n)) % self.window)[last]
        self.zs[at] = np.clip(z[keep], -Z_LIMIT, Z_LIMIT)[last]
        self.ys[at] = np.asarray(ys, dtype=np.float64)[keep][last]
        self.ws[at] = np.asarray(weights, dtype=np.float64)[keep][last]
        self.pos = (self.pos + n) % self.window
        self.seen += n

    def fit(self, iterations: int = 12) -> None:
        """Fit on the pairs given to :meth:`update` (the ring of the last ``window``)."""
        n = min(self.seen, self.window)
        if n == 0:
            return
        self.fit_pairs(self.zs[:n], self.ys[:n], self.ws[:n], iterations=iterations)

    def fit_pairs(self, z: FloatArray, y: FloatArray, w: FloatArray,
                  who: UIntArray | None = None, iterations: int = 12,
                  cap: bool | None = None) -> None:
        """Newton steps on the penalised log likelihood of these pairs (a millisecond), then
        the tail cap (:func:`tail_knots`, when ``who`` — the customer of each pair — is given
        and ``cap``, by default ``TAIL_CAP``, is on).

        Parametrised on centred log-odds, ``a · (z − z̄) + c``, with the prior ``a ~ 0`` and
        ``c ~ logit(base rate)`` worth ``PRIOR_STRENGTH`` outcomes at p = 0.5 (module
        docstring).
        """
        n = len(z)
        if n == 0:
            return
        z = np.clip(np.where(np.isfinite(z), z, 0.0), -Z_LIMIT, Z_LIMIT)
        total = float(w.sum())
        if total <= 0:
            return
        zbar = float(w @ z) / total
        zc = z - zbar
        base = (float(w @ y) + 0.5) / (total + 1.0)  # Beta(1/2, 1/2) posterior mean
        c0 = math.log(base / (1.0 - base))
        lam = PRIOR_STRENGTH * 0.25  # curvature of PRIOR_STRENGTH pairs at p = 0.5

        def loss(a: float, c: float) -> float:
            m = np.clip(a * zc + c, -35.0, 35.0)
            return float(w @ (np.logaddexp(0.0, m) - y * m)) + 0.5 * lam * (
                a * a + (c - c0) ** 2)

        start = (min(max(self.a, 0.0), A_MAX), self.b + self.a * zbar)
        a, c = start
        for _ in range(iterations):
            q = 1.0 / (1.0 + np.exp(-np.clip(a * zc + c, -35.0, 35.0)))
            r = w * (q - y)
            h = w * q * (1.0 - q)
            ga = float(r @ zc) + lam * a
            gc = float(r.sum()) + lam * (c - c0)
            haa = float(h @ (zc * zc)) + lam
            hac = float(h @ zc)
            hcc = float(h.sum()) + lam
            det = haa * hcc - hac * hac
            if det <= 1e-12:
                break
            da = max(-1.0, min(1.0, (hcc * ga - hac * gc) / det))  # damped: a few units a step
            dc = max(-3.0, min(3.0, (haa * gc - hac * ga) / det))
            a = min(max(a - da, 0.0), A_MAX)
            c -= dc
            if abs(da) < 1e-7 and abs(dc) < 1e-7:
                break
        if not (math.isfinite(a) and math.isfinite(c)):
            return
        if loss(a, c) > loss(*start):
            a, c = start
        self.a, self.b = a, c - a * zbar
        self.z_lo, self.z_hi = float(z.min()), float(z.max())
        churners = int(np.count_nonzero(y))
        self.churners, self.stayers = churners, n - churners
        on = TAIL_CAP if cap is None else cap
        self.tail = None if who is None or not on else tail_knots(z, y, w, who, PRIOR_STRENGTH,
                                                          self.a, self.b)


def calibrated(z: float, a: float, b: float, z_lo: float, z_hi: float,
               tail: Tail | None) -> float:
    """The served probability of prior-corrected log-odds ``z``: Platt ``σ(a·z + b)`` on ``z``
    clamped to the fitted range, capped by the tail knots (when any).

    >>> calibrated(3.0, 1.0, 0.0, -2.0, 2.0, None) == sigmoid(2.0)
    True
    >>> round(calibrated(2.0, 1.0, 0.0, -2.0, 2.0, ((0.0, 1.0), (-1.0, -1.0))), 4)
    0.2689
    """
    zc = min(max(z, z_lo), z_hi)
    m = a * zc + b
    if tail is not None:
        m = min(m, tail_cap(zc, tail))
    return sigmoid(m)


def is_calibrated(churners: int, stayers: int) -> bool:
    """Whether a calibration fitted on these outcomes counts as calibrated (module docstring).

    >>> is_calibrated(19, 5000), is_calibrated(20, 20)
    (False, True)
    """
    return min(churners, stayers) >= MIN_CLASS_OUTCOMES


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
