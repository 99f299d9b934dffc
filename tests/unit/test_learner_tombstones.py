"""Checkpoint tombstones keep what removal needs, pickle small, and older states still load."""

from __future__ import annotations

import pickle

from online_models.observations import Observation
from streams.learner.tombstones import Tombstones


def _resolved(n: int) -> list[Observation]:
    return [Observation(f"c{i}", 86400.0 * i + 0.5, {f"f{j}": float(j) for j in range(44)},
                        0.3, "7-logreg") for i in range(n)]


def test_tombstones_round_trip_customer_and_time_only() -> None:
    resolved = _resolved(50)
    back = pickle.loads(pickle.dumps(Tombstones.of(resolved), protocol=5))
    assert isinstance(back, Tombstones)
    assert [(o.customer_id, o.t) for o in back] == [(o.customer_id, o.t) for o in resolved]
    assert [o.obs_id for o in back] == [o.obs_id for o in resolved]
    assert all(o.x == {} for o in back)


def test_tombstones_pickle_far_smaller_than_the_observations() -> None:
    resolved = _resolved(1000)
    small = len(pickle.dumps(Tombstones.of(resolved), protocol=5))
    assert small * 20 < len(pickle.dumps(resolved, protocol=5))


def test_a_plain_list_of_an_older_state_still_loads() -> None:
    older = pickle.loads(pickle.dumps(_resolved(3), protocol=5))
    assert [o.customer_id for o in older] == ["c0", "c1", "c2"]
