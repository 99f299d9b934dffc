"""A learner state pickled by an earlier churnpulse still loads (the learner must not crash on
upgrade): fields added since get their defaults, an old deque of label ids becomes RecentIds."""

from __future__ import annotations

import pickle
from collections import deque

from online_models.learner import Learner
from streams.learner.loop import RecentIds
from streams.learner.service import LearnerState


def test_a_state_from_before_held_labels_and_churn_times_loads_with_defaults() -> None:
    state = LearnerState(Learner.create(), version=7, offsets={0: 42})
    old = state.__dict__
    del old["held"], old["churn_times"]
    old["recent_labels"] = deque(["l-1", "l-2"], maxlen=100_000)  # how it was stored before

    loaded = pickle.loads(pickle.dumps(state))

    assert loaded.version == 7
    assert loaded.offsets == {0: 42}
    assert loaded.held == []
    assert loaded.churn_times == {}
    assert isinstance(loaded.recent_labels, RecentIds)
    assert "l-2" in loaded.recent_labels and "l-3" not in loaded.recent_labels
    assert len(loaded.recent_labels) == 2


def test_a_current_state_round_trips_unchanged() -> None:
    state = LearnerState(Learner.create(), version=3, churn_times={"c": [1.0]})
    state.recent_labels.append("l-9")
    loaded = pickle.loads(pickle.dumps(state))
    assert loaded.churn_times == {"c": [1.0]}
    assert "l-9" in loaded.recent_labels
