"""What a model version serves: a River classifier and its calibration, travelling together.

:class:`CalibratedModel` wraps the learner's River model (``raw``, the ranking model that
drivers explain) with the prior correction of its class weighting (``shift``) and the Platt
calibration fitted online on delayed outcomes (``a``, ``b``), see
:mod:`online_models.calibration`. ``predict_proba_one`` gives the calibrated churn probability;
``raw_proba`` the raw model's. The learner trains the raw model through ``learn_one`` and
keeps ``shift``, ``a`` and ``b`` up to date (the evidence they are fitted on stays with the
learner); a published version pickles them with the model, so a version's scores and its
calibration never come apart.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable
from typing import Any, cast

from river import base

from online_models.calibration import logit, sigmoid


def accepts_weight(model: Any) -> bool:
    """Whether ``model.learn_one`` takes a sample weight ``w``."""
    try:
        params = inspect.signature(model.learn_one).parameters
    except (TypeError, ValueError):
        return False
    return "w" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class CalibratedModel(base.Classifier):
    """A raw River classifier plus prior correction and Platt calibration.

    >>> from online_models.model import make_model
    >>> m = CalibratedModel(make_model())
    >>> m.predict_proba_one({"x": 1.0})[True], m.raw_proba({"x": 1.0})
    (0.5, 0.5)
    >>> m.shift = -2.0  # trained with churners weighed e^2 times the stayers
    >>> round(m.predict_proba_one({"x": 1.0})[True], 4)
    0.1192
    """

    def __init__(self, raw: base.Classifier, shift: float = 0.0, a: float = 1.0,
                 b: float = 0.0) -> None:
        self.raw = raw
        self.shift = shift
        self.a = a
        self.b = b
        self._weighted = accepts_weight(raw)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._weighted = accepts_weight(self.raw)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_weighted"}

    @property
    def steps(self) -> Any:
        """The raw pipeline's steps (for code that reads the pipeline, e.g. feature schema)."""
        return getattr(self.raw, "steps", None)

    def raw_proba(self, x: dict[str, float]) -> float:
        """The raw model's churn probability: the ranking score, class weights included."""
        proba = self.raw.predict_proba_one(cast(dict[Hashable, Any], x))
        return float(proba.get(True, 0.0))

    def log_odds(self, x: dict[str, float]) -> float:
        """Prior-corrected log-odds (the calibrator's input)."""
        return logit(self.raw_proba(x)) + self.shift

    def proba(self, x: dict[str, float]) -> float:
        """The calibrated churn probability."""
        return sigmoid(self.a * self.log_odds(x) + self.b)

    def calibrate(self, z: float) -> float:
        """The calibrated probability of prior-corrected log-odds ``z``."""
        return sigmoid(self.a * z + self.b)

    def predict_proba_one(self, x: dict[Hashable, Any], **kwargs: Any
                          ) -> dict[base.typing.ClfTarget, float]:
        p = self.proba(cast(dict[str, float], x))
        return {False: 1.0 - p, True: p}

    def predict_one(self, x: dict[Hashable, Any], **kwargs: Any) -> bool:
        return self.proba(cast(dict[str, float], x)) >= 0.5

    def learn_one(self, x: dict[Hashable, Any], y: base.typing.ClfTarget,
                  w: float = 1.0) -> None:
        raw: Any = self.raw
        if self._weighted:
            raw.learn_one(x, y, w=w)
        else:
            raw.learn_one(x, y)


def raw_model(model: Any) -> Any:
    """The ranking model inside a :class:`CalibratedModel`, or ``model`` itself (a model
    of a checkpoint written before calibration existed)."""
    return model.raw if isinstance(model, CalibratedModel) else model
