"""The learner's status: window figures recomputed at most every STATUS_EVERY_S, counters
always fresh."""

from __future__ import annotations

from online_models.learner import Learner
from online_models.observations import LabelPolicy, Observation, Resolution
from streams.learner.loop import LearningLoop
from streams.learner.service import LearnerState, status_of
from streams.redis.observation_store import InMemoryObservationStore


def _learn(learner: Learner, start: int, n: int) -> None:
    learner.learn_batch([Resolution(Observation(f"c{i}", float(i), {"a": float(i % 7)}, 0.5,
                                                "1-logreg"), i % 3 == 0)
                         for i in range(start, start + n)])


def test_counters_stay_fresh_and_window_figures_come_from_the_previous_status() -> None:
    learner = Learner.create("logreg", ("svm",))
    state = LearnerState(learner)
    loop = LearningLoop(InMemoryObservationStore(LabelPolicy()), learner, LabelPolicy())
    _learn(learner, 0, 300)
    whole = status_of(state, loop, 0)
    assert "roc_auc" in whole["models"]["logreg"] and "ece" in whole["served"]
    _learn(learner, 300, 100)
    quick = status_of(state, loop, 0, whole)
    assert quick["resolved"] == 400 and quick["models"]["logreg"]["n"] == 400
    assert quick["models"]["svm"]["learned"] == 400
    assert quick["models"]["logreg"]["roc_auc"] == whole["models"]["logreg"]["roc_auc"]
    fresh = status_of(state, loop, 0)
    assert fresh["models"]["logreg"]["n"] == 400
    assert set(learner.report(window=False)["models"]["logreg"]) < set(
        fresh["models"]["logreg"])
