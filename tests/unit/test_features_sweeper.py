"""The sweeper of quiet customers and the watermarks that drive it, on the in-memory store."""

from __future__ import annotations

import orjson

from online_models.model import UNTRAINED_VERSION
from streams.records import MemorySink, RawRecord
from streams.redis.feature_store import InMemoryFeatureStore
from streams.settings import FeatureSettings, SweepSettings, TopicSettings
from streams.timefmt import format_ts
from streams.worker.processor import EventBatchProcessor
from streams.worker.sweeper import Sweeper
from streams.worker.watermarks import Watermarks
from tests.unit.test_processor import FixedModel, event_bytes

T0 = 1_767_225_600.0
DAY = 86400.0
TOPICS = TopicSettings()


class World:
    def __init__(self, clock: str = "event", lateness: float = 0.0) -> None:
        self.wall = T0
        self.sink = MemorySink()
        self.store = InMemoryFeatureStore(FeatureSettings())
        self.settings = SweepSettings(rescore_after_s=DAY, clock=clock,  # type: ignore[arg-type]
                                      allowed_lateness_s=lateness, max_per_pass=2)
        self.marks = Watermarks(self.settings)
        self.proc = EventBatchProcessor(self.store, FixedModel(), self.sink, TOPICS,
                                        wall_clock=lambda: self.wall,
                                        rescore_after_s=DAY, watermarks=self.marks)
        self.sweeper = Sweeper(self.store, self.proc, self.marks, self.settings,
                               wall_clock=lambda: self.wall)
        self.offset = 0

    async def events(self, *items: tuple[str, float], partition: int = 0) -> None:
        records = []
        for cid, ts in items:
            records.append(RawRecord(TOPICS.events, partition, self.offset, cid.encode(),
                                     event_bytes(self.offset, cid, ts)))
            self.offset += 1
        await self.proc.process(records)

    def sweeps(self) -> list[dict[str, object]]:
        out = [orjson.loads(r.value) for r in self.sink.on(TOPICS.scores)]
        return [r for r in out if r["reason"] == "sweep"]


async def test_quiet_customer_is_rescored_at_its_due_time_by_event_time() -> None:
    w = World()
    await w.events(("quiet", T0), ("busy", T0 + 60))
    assert await w.sweeper.run_pass([0]) == 0  # watermark T0 + 60: nobody due
    for hour in range(1, 60):
        await w.events(("busy", T0 + hour * 3600))  # the partition's clock moves on
        await w.sweeper.run_pass([0])
    sweeps = w.sweeps()
    quiet = [s for s in sweeps if s["customer_id"] == "quiet"]
    assert [s["ts"] for s in quiet] == [format_ts(T0 + DAY), format_ts(T0 + 2 * DAY)]
    assert quiet[0]["score_id"] == f"quiet:sweep:{int((T0 + DAY) * 1000)}:{UNTRAINED_VERSION}"
    assert quiet[0]["events_total"] == 1
    assert quiet[0]["last_event_id"] is None
    assert not [s for s in sweeps if s["customer_id"] == "busy"]  # never quiet for a day
    assert w.store.due_entries(0)["quiet"] == T0 + 3 * DAY


async def test_sweep_scores_use_features_at_the_due_time() -> None:
    w = World()
    await w.events(("a", T0))
    due = await w.store.due(0, T0 + DAY, 10)
    assert [(d.customer_id, d.due) for d in due] == [("a", T0 + DAY)]
    features = await w.store.features("a", T0 + DAY)
    assert features["days_since_last"] == 1.0


async def test_a_newer_event_moves_the_due_time_and_wins_over_the_sweeper() -> None:
    w = World()
    await w.events(("a", T0))
    await w.events(("a", T0 + DAY / 2))
    assert await w.sweeper.sweep(0, T0 + DAY) == 0
    assert w.store.due_entries(0)["a"] == T0 + 1.5 * DAY
    await w.store.reschedule(0, [("a", T0 + DAY)])  # an older time never moves it back
    assert w.store.due_entries(0)["a"] == T0 + 1.5 * DAY


async def test_late_event_does_not_move_the_due_time_back() -> None:
    w = World()
    await w.events(("a", T0 + DAY))
    await w.events(("a", T0))
    assert w.store.due_entries(0)["a"] == T0 + 2 * DAY


async def test_catch_up_rescored_in_rounds_and_erased_customers_leave_the_index() -> None:
    w = World()
    await w.events(*[(f"c{i}", T0 + i) for i in range(5)])
    await w.store.forget("c4")
    assert await w.sweeper.sweep(0, T0 + DAY + 10) == 4  # rounds of max_per_pass=2
    assert "c4" not in w.store.due_entries(0)


async def test_watermark_waits_for_the_allowed_lateness() -> None:
    w = World(lateness=3600.0)
    await w.events(("a", T0), ("b", T0 + DAY + 1800))
    assert w.marks.watermark(0) == T0 + DAY + 1800 - 3600
    assert await w.sweeper.run_pass([0]) == 0
    await w.events(("b", T0 + DAY + 3600))
    assert await w.sweeper.run_pass([0]) == 1


async def test_wall_clock_drives_idle_live_partitions_in_auto_mode() -> None:
    w = World(clock="auto")
    w.wall = T0 + 5
    await w.events(("a", T0))  # live: event time close to the wall clock
    w.wall = T0 + DAY + 60  # idle for a day
    assert await w.sweeper.run_pass([0]) == 1
    replay = World(clock="auto")
    replay.wall = T0 + 400 * DAY  # replaying old events: event time only
    await replay.events(("a", T0))
    replay.wall += 2 * DAY
    assert await replay.sweeper.run_pass([0]) == 0


async def test_wall_mode_sweeps_partitions_without_events_since_start() -> None:
    w = World(clock="wall")
    await w.events(("a", T0), partition=2)
    fresh = Watermarks(w.settings)  # a restarted worker: no clocks yet
    w.wall = T0 + 2 * DAY
    assert fresh.sweep_time(2, w.wall) == T0 + 2 * DAY
    assert Watermarks(SweepSettings(clock="event")).sweep_time(2, w.wall) is None
