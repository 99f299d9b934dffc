"""Names of the models the learner can run (light: settings import it without River)."""

from __future__ import annotations

from typing import Literal, get_args

ModelName = Literal["logreg", "logreg_robust", "logreg_adagrad", "bayes", "svm", "hat", "arf",
                    "ensemble"]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
