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
from typing import Any, Literal, cast

from river import base, forest, linear_model, optim, preprocessing, tree

UNTRAINED_VERSION = "0-untrained"
RIVER_VERSION = _dist_version("river")


ModelName = Literal["logreg", "hat", "arf"]
MODEL_NAMES: tuple[str, ...] = ("logreg", "hat", "arf")


def make_model(name: ModelName = "logreg", learning_rate: float = 0.01,
               l2: float = 0.0, seed: int = 42) -> base.Classifier:
    """A fresh online classifier.

    ``logreg``: StandardScaler | LogisticRegression (the default; exact explanations), SGD with
    ``learning_rate`` for the weights and the intercept alike;
    ``hat``: Hoeffding adaptive tree; ``arf``: adaptive random forest of 10 trees.

    >>> m = make_model()
    >>> m.predict_proba_one({"x": 1.0})[True]
    0.5
    >>> make_model("nope")
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'nope'; known: logreg, hat, arf
    """
    if name == "logreg":
        pipeline = preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.SGD(learning_rate), l2=l2, intercept_lr=learning_rate
        )
        return cast(base.Classifier, pipeline)
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
        """Churn probability for one feature vector.

        >>> ModelHandle(UNTRAINED_VERSION, make_model()).score({"x": 2.0})
        0.5
        """
        proba = self.model.predict_proba_one(cast(dict[Hashable, Any], x))
        return float(proba.get(True, 0.0))


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
