"""Scores and drivers of a whole batch for the ensemble (:mod:`online_models.ensemble`).

The worker scores a batch of feature vectors with one model version at once
(:class:`online_models.score_batch.BatchScorer`). For :class:`~online_models.ensemble.MeanLogOdds`
each member is laid out as its own :class:`~online_models.score_batch.BatchScorer` (its
batch matrix, raw log-odds and contributions); :class:`MeanScorer` then takes per row what
:meth:`MeanLogOdds.log_odds <online_models.ensemble.MeanLogOdds.log_odds>` takes — each member's
probability through its own function, back to log-odds, the balanced member's prior correction
added, the mean — and serves it through the version's calibration; the drivers are the
per-feature mean of the members' contributions, the five largest, ranked over one matrix
(:class:`online_models.explain.MeanExplainer`'s values; ties ranked by it).
``tests/unit/test_model_ensemble.py`` holds the scores to the row-by-row path within 1e-12 and
the drivers to the explainer's. Cost (32 features, 2,000 rows, process CPU, load ~5): 20 µs a
row for score and drivers, against 10.5 for ``logreg`` and 15 for ``bayes`` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from online_models.bayes import _sigmoid
from online_models.calibration import logit
from online_models.ensemble import MeanLogOdds
from online_models.explain import LinearExplainer, MeanExplainer
from online_models.score_batch import BatchScorer, Driver, FloatArray, uncalibrated


@dataclass
class MeanScorer:
    """The batch scorer of a (calibrated) :class:`MeanLogOdds` (module docstring)."""

    members: tuple[BatchScorer, BatchScorer]
    shift: float
    served: Callable[[float], float] | None
    explainer: MeanExplainer
    _union: list[str] = field(init=False, repr=False)
    _at: tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        a, b = self.members
        union = list(a._names)
        where = {name: j for j, name in enumerate(union)}
        for name in b._names:
            if name not in where:
                where[name] = len(union)
                union.append(name)
        self._union = union
        self._at = (np.arange(len(a._names), dtype=np.intp),
                    np.array([where[name] for name in b._names], dtype=np.intp))

    @classmethod
    def of(cls, model: Any) -> MeanScorer | None:
        """The scorer of ``model``, or None when it is no ensemble of linear members."""
        raw, served = uncalibrated(model)
        if not isinstance(raw, MeanLogOdds):
            return None
        a, b = (BatchScorer.of(m) for m in raw.members)
        explainer = LinearExplainer.of(raw)
        if a is None or b is None or not isinstance(explainer, MeanExplainer):
            return None
        return cls((a, b), raw.shift, served, explainer)

    def score(self, xs: Sequence[Mapping[str, float]], top: int
              ) -> tuple[list[float], list[list[Driver]]]:
        """The served score of every row and its ``top`` drivers."""
        n = len(xs)
        width = len(self._union)
        total = np.zeros((n, width))
        shown = np.zeros((n, width))
        present = np.zeros((n, width), dtype=bool)
        zs = []
        for member, at in zip(self.members, self._at, strict=True):
            transform = member.transform
            inputs = xs if transform is None else [transform(x) for x in xs]
            values, here = member._matrix(inputs)
            zs.append([float(member.proba(z)) for z in member._log_odds(values, here)])
            factors, centres = member._t[0], member._t[1]
            total[:, at] += np.where(here, 0.5 * (factors * (values - centres)), 0.0)
            fresh = here & ~present[:, at]  # a value shown is the first member's
            shown[:, at] = np.where(fresh, values, shown[:, at])
            present[:, at] |= here
        shift, served = self.shift, self.served
        scores = []
        for pa, pb in zip(zs[0], zs[1], strict=True):
            p = _sigmoid(0.5 * (logit(pa) + shift + logit(pb)))
            scores.append(served(p) if served is not None else p)
        if top <= 0 or not width:
            return scores, [[] for _ in range(n)]
        return scores, self._drivers(total, shown, present, xs, top)

    def _drivers(self, total: FloatArray, shown: FloatArray, present: npt.NDArray[np.bool_],
                 xs: Sequence[Mapping[str, float]], top: int) -> list[list[Driver]]:
        """The ``top`` largest per-feature mean contributions per row; a row with a tie among
        its ``top + 1`` largest (or a non-finite one) is ranked by the explainer itself, in
        its input order (as :class:`~online_models.score_batch.BatchScorer` does)."""
        key = np.where(present, -np.abs(total), np.inf)
        width = min(top + 1, key.shape[1])
        order = np.argsort(key, axis=1, kind="stable")[:, :width]
        ranked = np.take_along_axis(key, order, axis=1)
        tied = ((ranked[:, 1:] == ranked[:, :-1]) & np.isfinite(ranked[:, 1:])).any(axis=1)
        odd = ~np.isfinite(np.where(present, total, 0.0)).all(axis=1)
        alone = (tied | odd).tolist()
        counts = present.sum(axis=1).tolist()
        cs = np.take_along_axis(total, order[:, :top], axis=1).tolist()
        vs = np.take_along_axis(shown, order[:, :top], axis=1).tolist()
        order_l = order[:, :top].tolist()
        names = self._union
        out: list[list[Driver]] = []
        for i, x in enumerate(xs):
            if alone[i]:
                out.append(self.explainer.drivers(x, top))
                continue
            c, v = cs[i], vs[i]
            out.append([{"feature": (name := names[j]), "value": x.get(name, v[r]),
                         "contribution": c[r]}
                        for r, j in enumerate(order_l[i][:min(top, counts[i])])])
        return out
