"""What a model version serves: a River classifier and its calibration, travelling together.

:class:`CalibratedModel` wraps the learner's River model (``raw``, the ranking model that
drivers explain) with the prior correction of its class weighting (``shift``) and the Platt
calibration fitted online on delayed outcomes (``a``, ``b``), see
:mod:`online_models.calibration`. ``predict_proba_one`` gives the calibrated churn probability;
``raw_proba`` the raw model's. The learner trains the raw model through ``learn_one`` and
keeps ``shift``, ``a`` and ``b`` up to date (the evidence they are fitted on stays with the
learner); a published version pickles them with the model, so a version's scores and its
calibration never come apart. With them travel the range of log-odds the calibration was
fitted on (scores clamp to it), the knots of its tail cap (:mod:`online_models.calibration_tail`;
none on versions published before it) and how many churners and stayers it rests on: a
version with too few is *calibrating* (:func:`model_calibrated`), and every score record says
so.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable
from typing import Any, cast

from river import base

from online_models.calibration import (
    Z_LIMIT,
    PlattCalibrator,
    calibrated,
    is_calibrated,
    logit,
)
from online_models.calibration_tail import Tail
from online_models.model import UNTRAINED_VERSION


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
    >>> m.calibrated  # no outcomes behind its calibration
    False
    """

    def __init__(self, raw: base.Classifier, shift: float = 0.0, a: float = 1.0,
                 b: float = 0.0) -> None:
        self.raw = raw
        self.shift = shift
        self.a = a
        self.b = b
        self.z_lo = -Z_LIMIT
        self.z_hi = Z_LIMIT
        self.churners: int | None = 0
        self.stayers: int | None = 0
        self.tail: Tail | None = None
        self._weighted = accepts_weight(raw)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # versions published before the clamp and the counts: no clamp, and trusted as before
        # (counts unknown: None)
        self.__dict__.update({"z_lo": -Z_LIMIT, "z_hi": Z_LIMIT, "churners": None,
                              "stayers": None, "tail": None, **state})
        self._weighted = accepts_weight(self.raw)

    def set_calibration(self, cal: PlattCalibrator) -> None:
        """Take the calibrator's last fit: ``(a, b)``, its log-odds range, counts and tail
        cap."""
        self.a, self.b = cal.a, cal.b
        self.tail = cal.tail
        self.z_lo, self.z_hi = cal.z_lo, cal.z_hi
        self.churners, self.stayers = cal.churners, cal.stayers

    @property
    def calibrated(self) -> bool:
        """Whether the calibration rests on enough churners and stayers (module docstring);
        a version published before the counts were recorded is trusted as it was."""
        if self.churners is None or self.stayers is None:
            return True
        return is_calibrated(self.churners, self.stayers)

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
        return self.calibrate(self.log_odds(x))

    def calibrate(self, z: float) -> float:
        """The calibrated probability of prior-corrected log-odds ``z`` (clamped to the range
        the calibration was fitted on, the top tail capped by its evidence)."""
        return calibrated(z, self.a, self.b, self.z_lo, self.z_hi, self.tail)

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


def model_calibrated(model: Any, version: str) -> bool:
    """Whether scores of ``model``, published as ``version``, count as calibrated
    probabilities: not the untrained start, and for a :class:`CalibratedModel`, a calibration
    resting on enough outcomes. A model without calibration published under a version of its
    own (a checkpoint written before calibration existed, a hand-made model) keeps being
    trusted as it was before the flag existed, and so does a version published before the
    counts were recorded.

    >>> from online_models.model import UNTRAINED_VERSION, make_model
    >>> model_calibrated(make_model(), UNTRAINED_VERSION), model_calibrated(make_model(), "3")
    (False, True)
    >>> model_calibrated(CalibratedModel(make_model()), "1-logreg")
    False
    """
    if version == UNTRAINED_VERSION:
        return False
    return model.calibrated if isinstance(model, CalibratedModel) else True
