"""The worker's side of learning: snapshots of what was scored, the churned set, drivers."""

from __future__ import annotations

import math
from dataclasses import replace

import orjson

from online_models.feature_vector import feature_vector
from online_models.model import ModelHandle, make_model
from online_models.observations import LabelPolicy
from streams.records import MemorySink, RawRecord
from streams.redis.churned import InMemoryChurnedCustomers
from streams.redis.feature_store import InMemoryFeatureStore
from streams.redis.observation_store import InMemoryObservationStore
from streams.redis.packed_state import quantized
from streams.settings import FeatureSettings, SweepSettings, TopicSettings
from streams.worker.processor import EventBatchProcessor
from streams.worker.sweeper import Sweeper
from streams.worker.watermarks import Watermarks
from tests.unit.test_processor import event_bytes

T0 = 1_767_225_600.0
DAY = 86400.0
TOPICS = TopicSettings()
POLICY = LabelPolicy(horizon_s=30 * DAY, interval_s=DAY)


def trained_model() -> ModelHandle:
    model = make_model()
    for i in range(300):
        x = {"log_events_total": float(i % 7), "days_since_last": float(i % 5),
             "tenure_days": float(i % 11)}
        model.learn_one(x, i % 5 > 2)
    return ModelHandle("3-logreg", model)


class Models:
    def __init__(self, handle: ModelHandle) -> None:
        self.handle = handle

    async def current(self) -> ModelHandle:
        return self.handle


class World:
    def __init__(self, handle: ModelHandle | None = None) -> None:
        self.sink = MemorySink()
        self.features = InMemoryFeatureStore(FeatureSettings())
        self.observations = InMemoryObservationStore(POLICY)
        self.churned = InMemoryChurnedCustomers()
        self.marks = Watermarks(SweepSettings(clock="event", allowed_lateness_s=0.0))
        self.proc = EventBatchProcessor(
            self.features, Models(handle or trained_model()), self.sink, TOPICS,
            wall_clock=lambda: T0, rescore_after_s=DAY, watermarks=self.marks,
            observations=self.observations, policy=POLICY, churned=self.churned)
        self.offset = 0

    async def events(self, *items: tuple[str, float]) -> None:
        records = []
        for cid, ts in items:
            records.append(RawRecord(TOPICS.events, 0, self.offset, cid.encode(),
                                     event_bytes(self.offset, cid, ts)))
            self.offset += 1
        await self.proc.process(records)

    def scores(self) -> list[dict[str, object]]:
        return [orjson.loads(r.value) for r in self.sink.on(TOPICS.scores)]


async def test_every_scored_customer_leaves_the_snapshot_that_was_scored() -> None:
    w = World()
    await w.events(("a", T0), ("b", T0 + 5), ("a", T0 + 10))
    pending = await w.observations.pending("a")
    assert len(pending) == 1
    snap = pending[0]
    score = next(s for s in w.scores() if s["customer_id"] == "a")
    state = await w.features.get("a")
    assert snap.t == T0 + 10
    scored = feature_vector(state, T0 + 10, w.proc.spec)
    assert snap.x == quantized(replace(snap, x=scored)).x  # what was scored, as stored
    assert (snap.score, snap.model_version) == (score["score"], "3-logreg")
    assert w.proc.totals.observed == 2


async def test_at_most_one_snapshot_per_customer_per_interval() -> None:
    w = World()
    await w.events(("a", T0))
    await w.events(("a", T0 + 3600))
    await w.events(("a", T0 + 7200))
    await w.events(("a", T0 + DAY + 1))
    assert [o.t for o in await w.observations.pending("a")] == [T0, T0 + DAY + 1]
    assert len(w.scores()) == 4  # every batch still scores
    assert w.proc.totals.observed == 2


async def test_a_churned_customer_is_not_scored_until_it_returns() -> None:
    w = World()
    await w.events(("a", T0), ("b", T0))
    await w.churned.mark("a", T0 + 2 * DAY)
    await w.events(("a", T0 + DAY), ("b", T0 + DAY))  # a: before its churn: skipped
    assert [s["customer_id"] for s in w.scores()[2:]] == ["b"]
    assert w.proc.totals.skipped_churned == 1
    assert [o.t for o in await w.observations.pending("a")] == [T0]
    await w.events(("a", T0 + 10 * DAY))  # after the churn: it came back
    assert w.scores()[-1]["customer_id"] == "a"
    assert w.proc.observer.totals.returned == 1
    assert "a" not in w.churned.times
    assert [o.t for o in await w.observations.pending("a")] == [T0, T0 + 10 * DAY]


async def test_sweeps_record_snapshots_and_skip_churned_customers() -> None:
    w = World()
    sweeper = Sweeper(w.features, w.proc, w.marks,
                      SweepSettings(rescore_after_s=DAY, clock="event", allowed_lateness_s=0.0),
                      wall_clock=lambda: T0)
    await w.events(("a", T0), ("b", T0))
    await w.churned.mark("b", T0 + 3600)
    await w.events(("c", T0 + 3 * DAY))
    sent = [await sweeper.sweep(0, T0 + 3 * DAY) for _ in range(2)]
    assert sent == [1, 1]  # a at +1 d, then at +2 d; b skipped (and moved on) both times
    sweeps = [s for s in w.scores() if s["reason"] == "sweep"]
    assert {s["customer_id"] for s in sweeps} == {"a"}
    assert [o.t for o in await w.observations.pending("a")] == [T0, T0 + DAY, T0 + 2 * DAY]
    assert [o.t for o in await w.observations.pending("b")] == [T0]
    assert sweeper.stats.skipped_churned == 2


async def test_scores_carry_drivers_that_add_up_to_the_log_odds() -> None:
    handle = trained_model()
    w = World(handle)
    await w.events(("a", T0), ("a", T0 + 100))
    score = w.scores()[0]
    drivers = score["drivers"]
    assert isinstance(drivers, list)
    assert 0 < len(drivers) <= 5
    assert {"feature", "value", "contribution"} == set(drivers[0])
    mags = [abs(d["contribution"]) for d in drivers]
    assert mags == sorted(mags, reverse=True)
    # every contribution of the vector, plus the intercept, gives the score's log-odds
    from online_models.explain import LinearExplainer

    explainer = LinearExplainer.of(handle.model)
    assert explainer is not None
    snap = (await w.observations.pending("a"))[0]  # the snapshot keeps x packed: recompute
    x = feature_vector(await w.features.get("a"), snap.t, w.proc.spec)
    total = sum(c.contribution for c in explainer.top(x, k=len(x))) + explainer.intercept
    p = float(score["score"])  # type: ignore[arg-type]
    assert math.isclose(total, math.log(p / (1 - p)), rel_tol=1e-9, abs_tol=1e-9)


async def test_untrained_or_nonlinear_models_have_no_drivers() -> None:
    w = World(ModelHandle("0-untrained", make_model()))
    await w.events(("a", T0))
    assert w.scores()[0]["drivers"] == []
    w = World(ModelHandle("1-hat", make_model("hat")))
    await w.events(("a", T0))
    assert w.scores()[0]["drivers"] == []


async def test_without_an_observation_store_nothing_changes_but_drivers() -> None:
    sink = MemorySink()
    proc = EventBatchProcessor(InMemoryFeatureStore(FeatureSettings()), Models(trained_model()),
                               sink, TOPICS, wall_clock=lambda: T0)
    stats = await proc.process([RawRecord(TOPICS.events, 0, 0, b"a", event_bytes(0, "a", T0))])
    assert (stats.scores, stats.observed, stats.skipped_churned) == (1, 0, 0)
