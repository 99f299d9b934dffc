"""River's linear pipelines learned and scored a batch at a time, with River's per-row steps.

The learner's linear models are River pipelines ``[FuncTransformer] | StandardScaler |
LogisticRegression`` (SGD or AdaGrad, log or hinge loss). River runs each ``learn_one`` through
dicts and Python loops (~45 µs per row at 44 features). :func:`learn_rows` runs the *same*
per-row recursion on numpy arrays: per row, the scaler's Welford update of the features
present, the scaled row, the loss gradient at the current weights, the intercept step and the
optimizer's step on the weights of the features present — then writes the state back into the
River objects, which stay the store of record (pickled, published, served by
``predict_proba_one``). Nothing is averaged over the batch (River's ``learn_many`` takes one
mean-gradient step per batch, a different model): the weights after a batch do not depend on
how the rows were split into batches, and equal River's ``learn_one`` loop up to float
rounding (numpy sums the dot product in another order; measured in
``tests/unit/test_linear_batch.py``: max relative weight difference < 1e-9 after 3,000 rows).

:func:`proba_many` scores a batch with a (frozen) pipeline: one matrix product instead of a
``predict_proba_one`` per row (the shadow predictions of :mod:`online_models.learner`).

Anything else (trees, :class:`online_models.bayes.BayesLogistic`, an L1 penalty, a scheduled
learning rate) is not a :class:`LinearPlan`: the caller keeps per-row calls, on the shared
transformed rows when the model is ``FuncTransformer | model`` (:func:`split_transform`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt
from river import compose, linear_model, optim, preprocessing

from online_models.bayes import CLIP, BayesLogistic
from online_models.transform_batch import VECTORISED

FloatArray = npt.NDArray[np.float64]
Row = Mapping[str, float]
Transform = Callable[[Row], Mapping[str, float]]


@dataclass(frozen=True)
class LinearPlan:
    """The parts of a River linear pipeline :func:`learn_rows` knows how to step."""

    transform: Transform | None
    scaler: preprocessing.StandardScaler
    glm: linear_model.LogisticRegression
    adagrad: bool


def linear_plan(model: Any) -> LinearPlan | None:
    """The plan of ``model`` (a River pipeline), or None when it is not one we can step.

    >>> from river import compose, linear_model, preprocessing, tree
    >>> linear_plan(preprocessing.StandardScaler() | linear_model.LogisticRegression()) is None
    False
    >>> linear_plan(tree.HoeffdingTreeClassifier()) is None
    True
    """
    if not isinstance(model, compose.Pipeline):
        return None
    steps: list[Any] = list(model.steps.values())
    transform: Transform | None = None
    if len(steps) == 3 and type(steps[0]) is compose.FuncTransformer:
        func: Any = steps[0].func
        transform = func
        steps = steps[1:]
    if len(steps) != 2:
        return None
    scaler, glm = steps
    if type(scaler) is not preprocessing.StandardScaler or type(
            glm) is not linear_model.LogisticRegression:
        return None
    if not scaler.with_std or scaler.window_size is not None or glm.l1 != 0.0:
        return None
    opt = glm.optimizer
    if type(opt) not in (optim.SGD, optim.AdaGrad) or type(
            opt.lr) is not optim.schedulers.Constant or type(
            glm.intercept_lr) is not optim.schedulers.Constant:
        return None
    if type(glm.loss) not in (optim.losses.Log, optim.losses.Hinge) or type(
            glm.initializer) is not optim.initializers.Zeros:
        return None
    return LinearPlan(transform, scaler, glm, type(opt) is optim.AdaGrad)


def bayes_log_odds_many(model: Any, rows: Rows, transform: Transform | None,
                        index: Sequence[int]) -> list[float] | None:
    """:meth:`online_models.bayes.BayesLogistic.log_odds` of the rows at ``index`` at once
    (a missing or non-finite input counts as 0, standardised inputs winsorised); None when
    ``model`` is not one (``tests/unit/test_linear_batch.py`` checks it against the class)."""
    if not isinstance(model, BayesLogistic) or not hasattr(model, "active"):
        return None
    cols, x = rows.matrix(transform)
    x = x[np.asarray(index, dtype=np.intp)]
    where = model.index
    pick = [(j, where[c]) for j, c in enumerate(cols) if c in where and model.active[where[c]]]
    z = np.full(len(x), float(model.mean[0]))
    known = {i for _, i in pick}
    for i in where.values():  # active features no row has: their value 0
        if model.active[i] and i not in known:
            z += float(model.mean[i]) * min(max(-float(model.centre[i]) / float(
                model.scale[i]), -CLIP), CLIP)
    if pick:
        js = np.array([j for j, _ in pick], dtype=np.intp)
        ms = np.array([i for _, i in pick], dtype=np.intp)
        v = x[:, js]
        v = np.where(np.isfinite(v), v, 0.0)
        std = np.clip((v - model.centre[ms]) / model.scale[ms], -CLIP, CLIP)
        z = z + std @ model.mean[ms]
    return [float(t) for t in z.tolist()]


def split_transform(model: Any) -> tuple[Transform, Any] | None:
    """``(func, final)`` of a two-step pipeline ``FuncTransformer(func) | final``: the final
    model can be called on :meth:`Rows.dicts` (a function step learns nothing), sharing the
    transform's output with other models of the batch.

    >>> from river import compose, linear_model
    >>> split_transform(compose.FuncTransformer(dict) | linear_model.LogisticRegression())[0]
    <class 'dict'>
    """
    if not isinstance(model, compose.Pipeline):
        return None
    steps: list[Any] = list(model.steps.values())
    if len(steps) != 2 or type(steps[0]) is not compose.FuncTransformer:
        return None
    func: Any = steps[0].func
    return func, steps[1]


class Rows:
    """One batch of input rows, transformed and laid out as a matrix once per transform.

    Models that share a transform (``logreg_robust`` and ``svm`` both apply ``robust``) share
    its output. A matrix holds NaN where a row lacks a feature.
    """

    def __init__(self, rows: Sequence[Row]) -> None:
        self.rows = rows
        self._dicts: dict[Transform | None, Sequence[Row]] = {None: rows}
        self._matrices: dict[Transform | None, tuple[list[str], FloatArray]] = {}
        # each row's keys, when every NaN of the untransformed matrix is a missing key
        self._keys: list[tuple[str, ...]] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def dicts(self, transform: Transform | None) -> Sequence[Row]:
        out = self._dicts.get(transform)
        if out is None:
            assert transform is not None
            out = self._dicts[transform] = [transform(r) for r in self.rows]
        return out

    def row(self, transform: Transform | None, i: int) -> Row:
        """Row ``i`` transformed (without transforming the others)."""
        done = self._dicts.get(transform)
        if done is not None:
            return done[i]
        assert transform is not None
        return transform(self.rows[i])

    def matrix(self, transform: Transform | None) -> tuple[list[str], FloatArray]:
        """(columns, matrix) of the transformed rows: from the untransformed matrix when the
        transform has a matrix form (:mod:`online_models.transform_batch`) and no row holds
        a NaN value, else from the transformed dicts."""
        got = self._matrices.get(transform)
        if got is None and transform is not None and transform not in self._dicts:
            fast = VECTORISED.get(transform)
            names, raw = self.matrix(None)
            if fast is not None and self._keys is not None:
                got = fast(names, raw, self._keys)
                if got is not None:
                    self._matrices[transform] = got
        if got is None:
            rows = self.dicts(transform)
            keys = [tuple(r) for r in rows]
            # rows grouped by their keys in order (a few kinds: the event types seen); the
            # columns in order of first appearance; each group's values copied as one block
            groups: dict[tuple[str, ...], list[int]] = {}
            for i, k in enumerate(keys):
                groups.setdefault(k, []).append(i)
            cols: dict[str, None] = {}
            for k in groups:
                cols.update(dict.fromkeys(k))
            names = list(cols)
            where = {c: j for j, c in enumerate(names)}
            x = np.full((len(rows), len(names)), math.nan)
            for k, at in groups.items():
                block = np.fromiter(chain.from_iterable(rows[i].values() for i in at),
                                    dtype=np.float64, count=len(at) * len(k))
                if len(groups) == 1 and list(k) == names:
                    x = block.reshape(len(at), len(k))
                else:
                    x[np.ix_(at, [where[c] for c in k])] = block.reshape(len(at), len(k))
            if transform is None:  # a NaN in the matrix stands for a missing key only
                absent = len(rows) * len(names) - sum(map(len, keys))
                self._keys = keys if int(np.isnan(x).sum()) == absent else None
            got = self._matrices[transform] = (names, x)
        return got


def plan_vectors(plan: LinearPlan, cols: Sequence[str]
                 ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The scaler's means and variances and the model's weights, in the order of ``cols``
    (0 for a column the model has not seen)."""
    scaler, weights = plan.scaler, plan.glm._weights
    return (np.array([scaler.means.get(c, 0.0) for c in cols], dtype=np.float64),
            np.array([scaler.vars.get(c, 0.0) for c in cols], dtype=np.float64),
            np.array([weights.get(c, 0.0) for c in cols], dtype=np.float64))


def _scores(plan: LinearPlan, rows: Rows, index: Sequence[int] | None) -> FloatArray:
    """The linear scores ``w · scaled(x) + intercept`` of the rows (at ``index``)."""
    cols, x = rows.matrix(plan.transform)
    if index is not None:
        x = x[np.asarray(index, dtype=np.intp)]
    means, var, w = plan_vectors(plan, cols)
    positive = var > 0.0
    scaled = np.where(positive, (x - means) / np.where(positive, np.sqrt(var), 1.0), 0.0)
    scaled = np.nan_to_num(scaled, nan=0.0)
    out: FloatArray = scaled @ w + plan.glm.intercept
    return out


def proba_many(plan: LinearPlan, rows: Rows, index: Sequence[int] | None = None
               ) -> list[float]:
    """``predict_proba_one(x)[True]`` of the rows (at ``index``): River's ``loss.mean_func``
    of the linear score, the scores computed at once."""
    mean_func = plan.glm.loss.mean_func
    return [float(mean_func(d)) for d in _scores(plan, rows, index).tolist()]


def logit_of_sigmoid(z: FloatArray, eps: float = 1e-12, saturate: float | None = None
                     ) -> FloatArray:
    """``calibration.logit(sigmoid(z))`` at once: ``z`` itself, clipped where the
    probability is clipped to ``[eps, 1 - eps]`` (and where River's sigmoid saturates to 0
    or 1 beyond ``±saturate``).

    >>> logit_of_sigmoid(np.array([0.0, 2.0, 40.0, -50.0]), saturate=30.0).round(3).tolist()
    [0.0, 2.0, 27.631, -27.631]
    """
    bound = math.log((1.0 - eps) / eps)
    if saturate is not None:
        z = np.where(z > saturate, bound, np.where(z < -saturate, -bound, z))
    out: FloatArray = np.clip(z, -bound, bound)
    return out


def log_odds_many(plan: LinearPlan, rows: Rows, index: Sequence[int] | None = None
                  ) -> list[float]:
    """``logit(predict_proba_one(x)[True])`` of the rows (at ``index``) at once (the log and
    hinge losses' probability is River's sigmoid, which saturates beyond ±30)."""
    return logit_of_sigmoid(_scores(plan, rows, index), saturate=30.0).tolist()  # type: ignore[no-any-return]


def _gradient(loss: Any, hinge: bool, y: bool, z: float) -> float:
    """River's scalar ``loss.gradient(y, z)`` of the log and hinge losses."""
    s = 1 if y else -1
    if hinge:
        return float(-s) if s * z <= loss.threshold else 0.0
    weight = loss.weight_pos if y else loss.weight_neg
    m = z * s
    if m > 18.0:
        return float(weight * math.exp(-m) * -s)
    if m < -18.0:
        return float(weight * -s)
    return float(weight * -s / (math.exp(m) + 1.0))


def learn_rows(plan: LinearPlan, rows: Rows, ys: Sequence[bool], ws: Sequence[float],
               index: Sequence[int] | None = None) -> None:
    """``pipeline.learn_one(x, y, w=w)`` for every row (at ``index``) in order (module
    docstring). ``ys`` and ``ws`` are per learned row."""
    cols, x = rows.matrix(plan.transform)
    if index is not None:
        x = x[np.asarray(index, dtype=np.intp)]
    n = len(x)
    if not n:
        return
    scaler, glm = plan.scaler, plan.glm
    opt: Any = glm.optimizer
    counts_d, means_d, vars_d = scaler.counts, scaler.means, scaler.vars
    weights_d = glm._weights
    present = ~np.isnan(x)
    # 1. the scaler after each row, for all rows at once: the running count, mean and
    #    variance of the features present (Chan's merge of the stored moments with every
    #    prefix of the batch, in coordinates centred on the stored mean)
    count = np.array([float(counts_d.get(c, 0)) for c in cols])
    mean0 = np.array([means_d.get(c, 0.0) for c in cols])
    m2 = np.array([vars_d.get(c, 0.0) for c in cols]) * count
    y = np.where(present, x - mean0, 0.0)
    s1 = np.cumsum(y, axis=0)
    s2 = np.cumsum(y * y, axis=0)
    counts = count + np.cumsum(present, axis=0)
    safe = np.where(counts > 0.0, counts, 1.0)
    shift = s1 / safe
    mus = mean0 + shift
    vs = np.maximum((m2 + s2 - s1 * shift) / safe, 0.0)
    positive = vs > 0.0
    xs = np.where(positive & present, (y - shift) / np.where(positive, np.sqrt(vs), 1.0), 0.0)
    # 2. the linear model: gradient at the current weights, intercept step, optimizer step
    w = np.array([weights_d.get(c, 0.0) for c in cols])
    adagrad = plan.adagrad
    g2 = np.array([opt.g2.get(c, 0.0) for c in cols]) if adagrad else np.zeros(0)
    where = np.where
    lr = float(opt.lr.learning_rate)
    ilr = float(glm.intercept_lr.learning_rate)
    eps = float(opt.eps) if adagrad else 0.0
    l2 = float(glm.l2)
    clip = float(glm.clip_gradient)
    loss = glm.loss
    hinge = type(loss) is optim.losses.Hinge
    intercept = float(glm.intercept)
    sqrt = np.sqrt
    for k in range(n):
        row = xs[k]
        z = float(row @ w) + intercept
        lg = _gradient(loss, hinge, bool(ys[k]), z) * ws[k]
        lg = min(max(lg, -clip), clip)
        if lg == 0.0 and not l2:  # the hinge beyond its margin: nothing moves (finite rows)
            continue
        intercept -= ilr * lg
        if l2:
            grad = where(present[k], row * lg + w * l2, 0.0)
        elif adagrad:
            grad = row * lg
        else:
            w -= row * (lr * lg)
            continue
        if adagrad:
            g2 += grad * grad
            w -= lr / sqrt(g2 + eps) * grad
        else:
            w -= lr * grad
    seen: Any = present.any(axis=0)
    for j, col in enumerate(cols):
        if not seen[j]:
            continue
        counts_d[col] = int(counts[-1, j])
        means_d[col] = float(mus[-1, j])
        vars_d[col] = float(vs[-1, j])
        weights_d[col] = float(w[j])
        if adagrad:
            opt.g2[col] = float(g2[j])
    glm.intercept = intercept
    opt.n_iterations += n
