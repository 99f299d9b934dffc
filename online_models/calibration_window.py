"""The evidence every model's calibration is refitted on: the most recent resolved rows.

Before issue 10's fix each resolved snapshot was scored once, by the model as it was before
its own batch, and that log-odds kept as calibration evidence: a learner stepping 24 times
(live) and one stepping 760 times (the backtest) fitted different calibrations on the same
raw model (largest calibrated difference 0.100 where the raw models agreed to 9e-14). The
:class:`EvidenceWindow` keeps the rows themselves (the features that were scored, the outcome,
the customer), and at every step the learner re-scores the whole window with the model it is
about to publish (:func:`refit_calibration`, when ``RESCORE`` is on): a version's
calibration is then a function of its raw model and the last ``size`` resolutions only,
whatever the step cadence. Off by default: on three simulated years (docs/alerts.md) it
lowered one seed's median warning under issue 10's 14 days (14.5 -> 13.7).

The rows are kept as a matrix per transform (``Rows.matrix``: what the batched linear and
Bayesian scorers read), updated in place from each batch's own matrix, so re-scoring a window
is one matrix product per model. Only the raw matrix is pickled (float32 when that is exact:
stored snapshots are half floats); transformed matrices are rebuilt after a restart.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from online_models.calibration import WINDOW, PlattCalibrator, logit
from online_models.calibration_tail import FloatArray, UIntArray
from online_models.linear_batch import (
    Row,
    Rows,
    Transform,
    bayes_log_odds_many,
    linear_plan,
    log_odds_many,
    logit_of_sigmoid,
    plan_vectors,
    split_transform,
)
from online_models.observations import Resolution
from online_models.served import CalibratedModel

#: Re-score the window every step (off by default: on three simulated years the budget's median
#: warning of seed 3 fell from 14.5 to 13.7 days, under issue 10's 14; docs/alerts.md).
RESCORE = False


def tag(text: str) -> int:
    """The 32-bit hash the window keeps of an id (customer: distinct counts; snapshot: the
    sample a sampled model takes, :meth:`online_models.learner.ModelSlot.takes`)."""
    return zlib.crc32(text.encode())


class EvidenceWindow(Rows):
    """A ring of the last ``size`` resolved rows, readable as :class:`Rows`.

    >>> from online_models.observations import Observation
    >>> w = EvidenceWindow(size=3)
    >>> batch = [Resolution(Observation(f"c{i}", 0.0, {"a": float(i)}, 0.5, "v"), i == 1)
    ...          for i in range(4)]
    >>> w.add(Rows([r.observation.x for r in batch]), batch)
    >>> len(w), w.matrix(None)[1][:, 0].tolist(), w.ys.tolist()
    (3, [1.0, 2.0, 3.0], [1.0, 0.0, 0.0])
    """

    def __init__(self, size: int = WINDOW) -> None:
        self.size = size
        self.names: list[str] = []
        self.raw: FloatArray = np.zeros((size, 0))
        self.ys: FloatArray = np.zeros(0)
        self.who: UIntArray = np.zeros(0, dtype=np.uint32)
        self.obs: UIntArray = np.zeros(0, dtype=np.uint32)
        self.pos = 0
        self.count = 0
        self._transformed: dict[Transform, tuple[list[str], FloatArray]] = {}

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict[str, Any]:
        raw = self.raw[:self.count]
        small = raw.astype(np.float32)
        exact = bool(np.array_equal(small.astype(np.float64), raw, equal_nan=True))
        return {"size": self.size, "names": self.names, "raw": small if exact else raw.copy(),
                "ys": self.ys.astype(np.bool_), "who": self.who, "obs": self.obs, "pos": self.pos,
                "count": self.count}

    def __setstate__(self, state: dict[str, Any]) -> None:
        raw = np.asarray(state.pop("raw"), dtype=np.float64)
        state["ys"] = np.asarray(state["ys"], dtype=np.float64)
        self.__dict__.update(state)
        self.raw = np.full((self.size, raw.shape[1]), math.nan)
        self.raw[:len(raw)] = raw
        self._transformed = {}

    @property
    def rows(self) -> Sequence[Row]:  # type: ignore[override]
        """The rows as dicts (a feature missing from a row is absent): for models scored one
        row at a time; the matrices are what the batched scorers read."""
        names = self.names
        return [{c: v for c, v in zip(names, row, strict=True) if not math.isnan(v)}
                for row in self.raw[:self.count].tolist()]

    def dicts(self, transform: Transform | None) -> Sequence[Row]:
        rows = self.rows
        return rows if transform is None else [transform(r) for r in rows]

    def matrix(self, transform: Transform | None) -> tuple[list[str], FloatArray]:
        if transform is None:
            return self.names, self.raw[:self.count]
        got = self._transformed.get(transform)
        if got is None:
            names, x = Rows(self.dicts(transform)).matrix(None)
            full = np.full((self.size, len(names)), math.nan)
            full[:len(x)] = x
            got = self._transformed[transform] = (list(names), full)
        return got[0], got[1][:self.count]

    def add(self, batch: Rows, resolutions: Sequence[Resolution]) -> None:
        """Append a learned batch (``batch`` holds the rows of ``resolutions``, in order);
        the oldest rows make room."""
        n = len(resolutions)
        if n == 0:
            return
        keep = min(n, self.size)
        at = (self.pos + np.arange(keep)) % self.size
        if self.count < self.size:  # grow the outcome arrays once, to the full size
            for name, dtype in (("ys", np.float64), ("who", np.uint32), ("obs", np.uint32)):
                arr = getattr(self, name)
                if len(arr) < self.size:
                    grown = np.zeros(self.size, dtype=dtype)
                    grown[:len(arr)] = arr
                    setattr(self, name, grown)
        tail = resolutions[n - keep:]
        self.ys[at] = [float(r.churned) for r in tail]
        self.who[at] = [tag(r.observation.customer_id) for r in tail]
        self.obs[at] = [tag(r.observation.obs_id) for r in tail]
        self.names, self.raw = _write(self.names, self.raw, batch.matrix(None), at, n - keep)
        for transform, (names, x) in list(self._transformed.items()):
            self._transformed[transform] = _write(names, x, batch.matrix(transform), at,
                                                  n - keep)
        self.pos = int((self.pos + keep) % self.size)
        self.count = min(self.size, self.count + keep)


def _write(names: list[str], x: FloatArray, got: tuple[list[str], FloatArray], at: Any,
           skip: int) -> tuple[list[str], FloatArray]:
    """Rows ``got[1][skip:]`` written into ``x`` at ring positions ``at`` (columns by name;
    a column new to the window is added, NaN for the rows that lack it)."""
    cols, rows = got
    new = [c for c in cols if c not in set(names)]
    if new:
        names = [*names, *new]
        x = np.hstack([x, np.full((len(x), len(new)), math.nan)])
    where = {c: j for j, c in enumerate(names)}
    block = np.full((len(rows) - skip, len(names)), math.nan)
    block[:, [where[c] for c in cols]] = rows[skip:]
    x[at] = block
    return names, x


def log_odds_of(model: CalibratedModel, rows: Rows, index: list[int]) -> list[float]:
    """``model.log_odds`` of the rows at ``index``, batched for linear pipelines."""
    shift = model.shift
    ensemble = getattr(model.raw, "log_odds_rows", None)  # online_models.ensemble
    if ensemble is not None:
        return [z + shift for z in ensemble(rows, index)]
    plan = linear_plan(model.raw)
    if plan is not None:
        return [z + shift for z in log_odds_many(plan, rows, index)]
    split = split_transform(model.raw)
    if split is None:
        return [model.log_odds(dict(rows.rows[i])) for i in index]
    transform, final = split
    zs = bayes_log_odds_many(final, rows, transform, index)
    if zs is not None:  # its probability is the sigmoid of these: logit(sigmoid(z)) + shift
        return [z + shift for z in logit_of_sigmoid(np.array(zs)).tolist()]
    dicts = rows.dicts(transform)
    return [logit(float(final.predict_proba_one(dicts[i]).get(True, 0.0))) + shift
            for i in index]


def batched(model: CalibratedModel) -> bool:
    """Whether ``model`` is scored a matrix at a time (linear pipelines, Bayesian logistic):
    the models whose calibration is refitted on the re-scored evidence window."""
    if linear_plan(model.raw) is not None or hasattr(model.raw, "log_odds_rows"):
        return True
    split = split_transform(model.raw)
    return split is not None and hasattr(split[1], "active")


def refit_calibration(model: CalibratedModel, cal: PlattCalibrator, window: EvidenceWindow,
                      sample: int = 1) -> bool:
    """Refit ``cal`` on ``window`` re-scored by ``model`` (the version about to be
    published; ``sample``: the model learns every churner and one stayer in ``sample``,
    weighted ``sample``). False, and nothing done, for a model scored row by row (trees keep
    the evidence of :meth:`PlattCalibrator.update`) and for a learner state written before the
    window existed, until the window holds as many pairs as its old evidence."""
    if not RESCORE or not batched(model) or len(window) < min(cal.seen, cal.window, window.size):
        return False
    n = len(window)
    ys = window.ys[:n]
    if sample > 1:
        index = np.flatnonzero((ys > 0) | (window.obs[:n] % sample == 0))
    else:
        index = np.arange(n)
    y = ys[index]
    w = np.where((sample > 1) & (y == 0), float(sample), 1.0)
    cal.fit_pairs(window_log_odds(model, window, index), y, w, window.who[index],
                  iterations=30)
    return True


def window_log_odds(model: CalibratedModel, window: EvidenceWindow,
                    index: npt.NDArray[np.intp]) -> FloatArray:
    """:func:`log_odds_of` the window's rows at ``index`` as an array; a linear pipeline's
    in one product of the raw matrix with its per-feature weight over scale (the values of
    :func:`online_models.linear_batch.log_odds_many` up to float rounding)."""
    plan = linear_plan(model.raw)
    if plan is None:
        return np.array(log_odds_of(model, window, index.tolist()), dtype=np.float64)
    cols, x = window.matrix(plan.transform)
    if len(index) < len(x):
        x = x[index]
    means, var, w = plan_vectors(plan, cols)
    positive = var > 0.0
    per = np.where(positive, w / np.sqrt(np.where(positive, var, 1.0)), 0.0)
    z = x @ per - float(means @ per) + plan.glm.intercept
    gaps = np.flatnonzero(np.isnan(z))
    if len(gaps):  # rows lacking a feature: it adds nothing (as scaled to 0)
        centred = x[gaps] - means
        np.nan_to_num(centred, copy=False, nan=0.0)
        z[gaps] = centred @ per + plan.glm.intercept
    out: FloatArray = logit_of_sigmoid(z, saturate=30.0) + model.shift
    return out
