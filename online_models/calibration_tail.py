"""The top tail of a calibration held to its evidence (issue 10).

A Platt fit (:mod:`online_models.calibration`) is a straight line in log-odds: fitted mostly on
the bulk of low scores, it extrapolates to the few highest ones, and early on (a few dozen
churners, each seen in many daily snapshots) that extrapolation claimed 0.54-0.84 for
snapshots of which 11-29 % churned. :func:`tail_knots` turns the same evidence into a cap per
bin of the top tail, counted in customers rather than snapshots; a version serves
``min(Platt, cap)`` (:func:`online_models.calibration.calibrated`), which is still a strictly
increasing function of the raw score (``TAIL_SLOPE``), so the ranking is unchanged. Pure.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from itertools import pairwise

import numpy as np
import numpy.typing as npt

TAIL_MIN_PAIRS = 50  # the smallest (top) bin of the tail cap
TAIL_SLOPE = 1e-6  # log-odds per unit of z added to the cap: strictly increasing, ranking kept
TAIL_SHARE = 8  # the cap covers the top 1/8 of the evidence (and at least 2 bins' worth)

FloatArray = npt.NDArray[np.float64]
UIntArray = npt.NDArray[np.uint32]
#: The tail cap a version carries: knots (z, log-odds) ascending in z (:func:`tail_knots`).
Tail = tuple[tuple[float, ...], tuple[float, ...]]


def tail_cap(z: float, tail: Tail) -> float:
    """The cap's log-odds at ``z``: none below the first knot (the bulk), linear between
    knots, flat beyond the last, plus ``TAIL_SLOPE · z`` (so that the capped scores keep the
    raw model's order; zero at the first knot, where the cap meets Platt).

    >>> knots = ((0.0, 2.0), (-3.0, -1.0))
    >>> [round(tail_cap(z, knots), 4) for z in (-1.0, 1.0, 5.0)]
    [inf, -2.0, -1.0]
    """
    kz, kv = tail
    i = bisect_right(kz, z)
    if i == 0:
        return math.inf  # below the tail: no cap
    if i == len(kz):
        v = kv[-1]
    else:
        z0, z1 = kz[i - 1], kz[i]
        v = kv[i - 1] + (kv[i] - kv[i - 1]) * (z - z0) / (z1 - z0)
    return v + TAIL_SLOPE * (z - kz[0])


def tail_knots(z: FloatArray, y: FloatArray, w: FloatArray, who: UIntArray, prior: float,
               a: float, b: float, smallest: int = TAIL_MIN_PAIRS) -> Tail | None:
    """The evidence cap on the top tail: how far the calibrated scores may go, bin by bin.

    The pairs are sorted by ``z`` and cut into bins from the top by halves (the top half, the
    next quarter, ... down to a top bin of ``smallest`` to ``2 · smallest`` pairs). Each bin's
    evidence counts *customers*, not snapshots (a churner's daily snapshots share one
    outcome): its churn share ``o`` (weighted pairs) is worth ``m`` outcomes, the number of
    distinct customers in the bin. Going up from the bottom bin (prior: the window's base
    rate), each bin's estimate is shrunk towards the bin below it with the weight of
    ``prior`` outcomes, ``(m·o + prior·below) / (m + prior)``: a higher bin rises above the
    one below only as far as its own customers show. The cap is that estimate, made
    non-decreasing (pool adjacent violators), as knots ``(mean z of the bin, log-odds)``.
    Served scores are ``min(Platt, cap)`` (:func:`calibrated`): Platt stands wherever it is
    at or below the evidence (the bulk, as a rule), and its extrapolation to the few highest
    scores cannot run ahead of it. (The estimate plus one posterior standard deviation as the
    cap left the top 1 % of ``tests/unit/test_calibration_tail.py`` at 1.5-1.9x its truth
    on some seeds: the estimate itself it is.) Returns None with fewer than
    ``2 · smallest`` pairs (no tail to speak of).

    >>> import random
    >>> from online_models.calibration import sigmoid
    >>> rnd = random.Random(1)
    >>> z = np.array([rnd.gauss(-3, 1) for _ in range(4000)])
    >>> y = np.array([rnd.random() < sigmoid(0.3 * v - 2.0) for v in z], dtype=float)
    >>> who = np.arange(4000, dtype=np.uint32) // 10  # ten snapshots per customer
    >>> kz, kv = tail_knots(z, y, np.ones(4000), who, prior=20.0, a=0.3, b=-2.0)
    >>> len(kz), all(u <= v for u, v in zip(kv, kv[1:]))
    (4, True)
    >>> 0.1 < sigmoid(kv[-1]) < 0.3  # near the top bin's churn (about 0.2)
    True
    """
    n = len(z)
    if n < 2 * smallest:
        return None
    order = np.argsort(-z, kind="stable")
    edges = [n]
    while edges[-1] // 2 >= smallest:
        edges.append(edges[-1] // 2)
    edges.append(0)
    total = float(w.sum())
    below = (float(w @ y) + 0.5) / (total + 1.0)
    zs: list[float] = []
    caps: list[float] = []
    weights: list[float] = []
    for hi, lo in pairwise(edges):  # from the bottom bin up (ranks lo..hi, 0 = top)
        idx = order[lo:hi]
        wb = w[idx]
        share = float(wb @ y[idx]) / float(wb.sum())
        m = float(len(np.unique(who[idx])))
        est = (m * share + prior * below) / (m + prior)
        below = est
        if hi > max(n // TAIL_SHARE, 2 * smallest):
            continue  # the bulk: Platt's two parameters pool it better than a bin can
        z_mean = float(wb @ z[idx]) / float(wb.sum())
        zs.append(z_mean)
        caps.append(min(max(est, 1e-9), 1.0 - 1e-9))
        weights.append(m + prior)
    if not caps:
        return None
    pooled = _pool_adjacent(caps, weights)
    # the cap begins at or above Platt (no step down where it starts), never lower after
    floor = min(max(1.0 / (1.0 + math.exp(-(a * zs[0] + b))), 1e-9), 1.0 - 1e-9)
    pooled = list(np.maximum.accumulate([max(pooled[0], floor), *pooled[1:]]))
    knots = sorted(zip(zs, (math.log(p / (1.0 - p)) for p in pooled), strict=True))
    kz = tuple(float(k) for k, _ in knots)
    if any(z1 <= z0 for z0, z1 in pairwise(kz)):  # ties in z (a constant model): no cap
        return None
    return kz, tuple(float(v) for _, v in knots)


def _pool_adjacent(values: list[float], weights: list[float]) -> list[float]:
    """Non-decreasing weighted least-squares fit (pool adjacent violators).

    >>> _pool_adjacent([0.1, 0.3, 0.2, 0.4], [1.0, 1.0, 1.0, 1.0])
    [0.1, 0.25, 0.25, 0.4]
    """
    blocks: list[list[float]] = []  # [value, weight, count]
    for v, wt in zip(values, weights, strict=True):
        blocks.append([v, wt, 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    out: list[float] = []
    for v, _, c in blocks:
        out.extend([v] * int(c))
    return out
