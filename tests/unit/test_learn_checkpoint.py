"""Checkpoints and River-style model checks: pickling, new and missing features, no mutation."""

from __future__ import annotations

import pickle
import random

import pytest

from online_models.learner import Learner
from online_models.model import (
    MODEL_NAMES,
    RIVER_VERSION,
    ModelHandle,
    dump_checkpoint,
    load_checkpoint,
    make_model,
)
from online_models.observations import Observation, Resolution


def stream(n: int, seed: int = 5) -> list[tuple[dict[str, float], bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = {"a": rng.random(), "b": rng.random() * 3}
        out.append((x, x["a"] + rng.gauss(0, 0.2) > 0.7))
    return out


def test_checkpoint_round_trip_scores_the_same_and_keeps_meta() -> None:
    model = make_model()
    for x, y in stream(200):
        model.learn_one(x, y)
    handle = ModelHandle("9-logreg", model, {"label_offsets": {"0": 12}})
    back = load_checkpoint(dump_checkpoint(handle))
    assert (back.version, back.meta) == ("9-logreg", {"label_offsets": {"0": 12}})
    for x, _ in stream(20, seed=6):
        assert back.score(x) == handle.score(x)


def test_a_checkpoint_of_another_river_version_is_refused() -> None:
    payload = pickle.loads(dump_checkpoint(ModelHandle("1", make_model())))
    payload["river"] = "0.19.0"
    with pytest.raises(ValueError, match=f"river 0.19.0, running {RIVER_VERSION}"):
        load_checkpoint(pickle.dumps(payload))


def test_the_learner_pickles_and_carries_on_identically() -> None:
    learner = Learner.create("logreg", ("hat",))
    data = stream(300)
    for i, (x, y) in enumerate(data[:200]):
        learner.learn(Resolution(Observation(f"c{i}", float(i), x, 0.5, "v"), y))
    twin = pickle.loads(pickle.dumps(learner))
    for i, (x, y) in enumerate(data[200:]):
        r = Resolution(Observation(f"d{i}", float(i), x, 0.5, "v"), y)
        assert learner.learn(r) == twin.learn(r)
    assert learner.report() == twin.report()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_take_new_and_missing_features_and_do_not_mutate_input(name: str) -> None:
    model = make_model(name)  # type: ignore[arg-type]
    for x, y in stream(60):
        model.learn_one(x, y)
    for x in ({"a": 0.5}, {"a": 0.5, "b": 1.0, "never_seen": 4.0}, {}):
        before = dict(x)
        p = model.predict_proba_one(x).get(True, 0.0)  # type: ignore[arg-type]
        assert 0.0 <= p <= 1.0
        model.learn_one(x, True)  # type: ignore[arg-type]
        assert x == before


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_pickles(name: str) -> None:
    model = make_model(name)  # type: ignore[arg-type]
    for x, y in stream(60):
        model.learn_one(x, y)
    twin = pickle.loads(pickle.dumps(model))
    x = {"a": 0.9, "b": 0.1}
    assert twin.predict_proba_one(x) == model.predict_proba_one(x)
