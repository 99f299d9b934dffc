"""Hostile input through the event processor: isolated, dead-lettered, never moving a clock."""

from __future__ import annotations

import math

import orjson

from online_models.model import UNTRAINED_VERSION, ModelHandle, make_model
from streams.contracts import InputLimits
from streams.records import MemorySink, RawRecord
from streams.redis.feature_store import InMemoryFeatureStore
from streams.settings import FeatureSettings, SweepSettings, TopicSettings
from streams.timefmt import format_ts
from streams.worker.processor import EventBatchProcessor
from streams.worker.watermarks import Watermarks

T0 = 1_767_225_600.0  # 2026-01-01
TOPICS = TopicSettings()
LATENESS = 60.0


class FixedModel:
    def __init__(self) -> None:
        self.handle = ModelHandle(UNTRAINED_VERSION, make_model())

    async def current(self) -> ModelHandle:
        return self.handle


def record(partition: int, offset: int, cid: str, ts: float | str, key: str | None = None,
           **extra: object) -> RawRecord:
    body = {"event_id": f"e{partition}-{offset}", "customer_id": cid, "event_type": "purchase",
            "ts": ts if isinstance(ts, str) else format_ts(ts), **extra}
    return RawRecord(TOPICS.events, partition, offset, (key or cid).encode(),
                     orjson.dumps(body), 1)


def make(limits: InputLimits) -> tuple[EventBatchProcessor, MemorySink, Watermarks,
                                       InMemoryFeatureStore]:
    async def no_sleep(_: float) -> None:
        return None

    sink, store = MemorySink(), InMemoryFeatureStore(FeatureSettings())
    marks = Watermarks(SweepSettings(allowed_lateness_s=LATENESS, clock="event"))
    proc = EventBatchProcessor(store=store, models=FixedModel(), sink=sink, topics=TOPICS,
                               wall_clock=lambda: T0, retry_sleep=no_sleep,
                               rescore_after_s=86400.0, watermarks=marks, limits=limits)
    return proc, sink, marks, store


def codes(sink: MemorySink) -> list[str]:
    return [dict(r.headers or [])["churn.dlq.code"].decode() for r in sink.on(TOPICS.dead_letter)]


async def test_rejected_records_never_move_the_watermark() -> None:
    # the store's own guard is reached only with the value cap lifted
    proc, sink, marks, store = make(InputLimits(max_abs_value=math.inf, clock=lambda: T0 + 100))
    batch = [
        record(0, 0, "a", T0, value=1e308),
        record(0, 1, "a", T0 + 10 * 86400),  # ten days ahead of the wall clock
        record(0, 2, "b", "9000-01-01T00:00:00Z"),
        record(0, 3, "c", T0 + 30, key="someone-else"),
        record(1, 0, "d", T0 + 10),
        record(1, 1, "a", T0 + 50, value=1e308),  # would overflow a's sums: refused by the store
        record(1, 2, "e", "1999-01-01T00:00:00Z"),
    ]
    stats = await proc.process(batch)
    assert codes(sink) == ["ts_in_future", "ts_in_future", "key_mismatch", "ts_too_old",
                           "overflow"]
    assert (stats.dead_lettered, stats.applied) == (5, 2)
    assert marks.watermark(0) == T0 - LATENESS
    assert marks.watermark(1) == T0 + 10 - LATENESS  # not T0 + 50: that event was refused
    # decoder-refused records never reach the due-index; a store-refused one (its time within
    # the decoder's bounds) may raise its customer's re-score time, in the same round trip
    assert store.due_entries(0) == {}
    assert store.due_entries(1)["d"] == T0 + 10 + 86400.0
    scores = {r.key: orjson.loads(r.value) for r in sink.on(TOPICS.scores)}
    assert set(scores) == {b"a", b"d"}
    assert scores[b"a"]["ts"] == format_ts(T0)
    assert (await store.get("a"))["n"] == 1.0
    dead = [r.value for r in sink.on(TOPICS.dead_letter)]
    assert dead == [batch[i].value for i in (1, 2, 3, 6, 5)]  # original bytes


async def test_a_batch_of_only_rejected_records_moves_nothing() -> None:
    proc, sink, marks, _ = make(InputLimits(clock=lambda: T0))
    await proc.process([record(0, 0, "a", T0 + 7200), record(0, 1, "b", T0, value=1e13)])
    assert codes(sink) == ["ts_in_future", "value_out_of_range"]
    assert marks.watermark(0) is None
    assert sink.on(TOPICS.scores) == []
