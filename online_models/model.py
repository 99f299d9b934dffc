"""River models: the factory, a versioned handle, and (de)serialisation.

A :class:`ModelHandle` is what scorers hold: the River model plus the version it was published
under. Every score carries that version. Checkpoints are pickles that record the River version
they were written with, because River does not promise to load pickles across versions.
"""

from __future__ import annotations

import pickle
from collections.abc import Hashable
from dataclasses import dataclass, field
from importlib.metadata import version as _dist_version
from typing import Any, cast

from river import base, compose, forest, linear_model, optim, preprocessing, tree

from online_models.bayes import BayesLogistic
from online_models.ensemble import MeanLogOdds
from online_models.model_names import MODEL_NAMES, ModelName
from online_models.transforms import robust

UNTRAINED_VERSION = "0-untrained"
RIVER_VERSION = _dist_version("river")


__all__ = ["MODEL_NAMES", "ModelName"]


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """How the learner trains a model: on a sample (expensive models), class-balanced or not."""

    sample: int = 1
    balanced: bool = True


# bayes learns unweighted: a second-order step with churner weights up to 50 overshoots (seed 1
# replay: served AUC 0.57 weighted, 0.72 unweighted); its calibration needs no prior shift
CONFIGS: dict[str, ModelConfig] = {"hat": ModelConfig(sample=4), "arf": ModelConfig(sample=8),
                                   "bayes": ModelConfig(balanced=False),
                                   # the ensemble weighs its class-balanced member itself
                                   "ensemble": ModelConfig(balanced=False)}


def model_config(name: str) -> ModelConfig:
    """
    >>> model_config("arf").sample, model_config("logreg").sample
    (8, 1)
    """
    return CONFIGS.get(name, ModelConfig())


def _logreg(optimizer: optim.base.Optimizer, l2: float, intercept_lr: float | None,
            loss: optim.losses.BinaryLoss | None = None, transform: bool = True
            ) -> base.Classifier:
    linear = linear_model.LogisticRegression(
        optimizer=optimizer, l2=l2, loss=loss,
        intercept_lr=intercept_lr if intercept_lr is not None else 0.01)
    scaled = preprocessing.StandardScaler() | linear
    if transform:
        return cast(base.Classifier, compose.FuncTransformer(robust) | scaled)
    return cast(base.Classifier, scaled)


def make_model(name: ModelName = "logreg", learning_rate: float = 0.01,
               l2: float = 0.0, seed: int = 42) -> base.Classifier:
    """A fresh online classifier (its raw, ranking part; the learner adds calibration).

    ``logreg`` (the default): StandardScaler | LogisticRegression with SGD steps of
    ``learning_rate`` for the weights and the intercept; ``logreg_robust``:
    :func:`online_models.transforms.robust` | StandardScaler | LogisticRegression with AdaGrad
    steps (per-feature step sizes); ``logreg_adagrad``: ``logreg_robust`` without the transform;
    ``bayes``: :class:`online_models.bayes.BayesLogistic`
    on the robust transform (second order, no step size, each snapshot's evidence tempered by
    interval / horizon); ``svm``: a linear SVM (hinge loss) on the same inputs — its margin
    becomes a probability by the learner's Platt calibration; ``hat``: Hoeffding adaptive
    tree; ``arf``: adaptive random forest of 10 trees; ``ensemble``:
    :class:`online_models.ensemble.MeanLogOdds` of ``logreg`` and ``bayes`` (the mean of their
    prior-corrected log-odds).

    >>> m = make_model()
    >>> m.predict_proba_one({"x": 1.0})[True]
    0.5
    >>> make_model("nope")
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'nope'; known: logreg, logreg_robust, logreg_adagrad, bayes, svm, \
hat, arf, ensemble
    """
    if name == "logreg":
        return _logreg(optim.SGD(learning_rate), l2, learning_rate, transform=False)
    if name == "logreg_robust":
        return _logreg(optim.AdaGrad(0.1), l2, 0.1)
    if name == "logreg_adagrad":
        return _logreg(optim.AdaGrad(0.1), l2, 0.1, transform=False)
    if name == "bayes":
        return cast(base.Classifier, compose.FuncTransformer(robust) | BayesLogistic())
    if name == "ensemble":
        return MeanLogOdds(make_model("logreg", learning_rate, l2), make_model("bayes"))
    if name == "svm":
        return _logreg(optim.AdaGrad(0.1), l2, 0.1, loss=optim.losses.Hinge())
    if name == "hat":
        return cast(base.Classifier, tree.HoeffdingAdaptiveTreeClassifier(seed=seed))
    if name == "arf":
        return cast(base.Classifier, forest.ARFClassifier(n_models=10, seed=seed))
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")


@dataclass(frozen=True)
class ModelHandle:
    """A model and the version it is published under (read-only for scorers)."""

    version: str
    model: base.Classifier
    meta: dict[str, Any] = field(default_factory=dict)

    def score(self, x: dict[str, float]) -> float:
        """Churn probability within the horizon: calibrated when the version carries its
        calibration (every version published since), the model's own probability for a
        checkpoint written before.

        >>> ModelHandle(UNTRAINED_VERSION, make_model()).score({"x": 2.0})
        0.5
        """
        proba = self.model.predict_proba_one(cast(dict[Hashable, Any], x))
        return float(proba.get(True, 0.0))

    def raw_score(self, x: dict[str, float]) -> float:
        """The ranking model's own probability (class weights included, not calibrated): what
        drivers explain.

        >>> ModelHandle(UNTRAINED_VERSION, make_model()).raw_score({"x": 2.0})
        0.5
        """
        raw = getattr(self.model, "raw", self.model)
        proba = raw.predict_proba_one(cast(dict[Hashable, Any], x))
        return float(proba.get(True, 0.0))

    @property
    def calibrated(self) -> bool:
        """Whether the version carries its calibration."""
        return hasattr(self.model, "shift") and hasattr(self.model, "raw")


def dump_checkpoint(handle: ModelHandle) -> bytes:
    """Serialise a handle with the River version it was written with."""
    payload = {"version": handle.version, "river": RIVER_VERSION,
               "model": handle.model, "meta": handle.meta}
    return pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)


def load_checkpoint(data: bytes) -> ModelHandle:
    """Inverse of :func:`dump_checkpoint`; refuses checkpoints of another River minor version.

    >>> h = load_checkpoint(dump_checkpoint(ModelHandle("7", make_model())))
    >>> h.version
    '7'
    """
    payload = pickle.loads(data)  # noqa: S301 - checkpoints come from our own registry
    written = str(payload.get("river", ""))
    if written.split(".")[:2] != RIVER_VERSION.split(".")[:2]:
        raise ValueError(
            f"checkpoint written with river {written}, running {RIVER_VERSION}; retrain"
        )
    return ModelHandle(str(payload["version"]), payload["model"], dict(payload.get("meta", {})))
