from __future__ import annotations

from collections.abc import Sequence

import orjson
import pytest

from online_models.features import FeatureSpec
from online_models.model import UNTRAINED_VERSION, ModelHandle, make_model
from streams.contracts import CustomerEvent
from streams.errors import TransientError
from streams.records import MemorySink, RawRecord
from streams.redis.feature_store import AppliedState, DueUpdates, InMemoryFeatureStore
from streams.settings import FeatureSettings, TopicSettings
from streams.timefmt import format_ts
from streams.worker.processor import EventBatchProcessor

T0 = 1_767_225_600.0
TOPICS = TopicSettings()


class FixedModel:
    def __init__(self) -> None:
        self.handle = ModelHandle(UNTRAINED_VERSION, make_model())

    async def current(self) -> ModelHandle:
        return self.handle


def raw(offset: int, value: bytes | None, ts_ms: int = 1000) -> RawRecord:
    return RawRecord(TOPICS.events, 0, offset, None, value, ts_ms)  # no key: nothing to check


def event_bytes(i: int, cid: str, ts: float = T0, **extra: object) -> bytes:
    body = {"event_id": f"e{i}", "customer_id": cid, "event_type": "login",
            "ts": format_ts(ts), **extra}
    return orjson.dumps(body)


def processor(sink: MemorySink, store: object | None = None) -> EventBatchProcessor:
    async def no_sleep(_: float) -> None:
        return None

    return EventBatchProcessor(
        store=store or InMemoryFeatureStore(FeatureSettings()),  # type: ignore[arg-type]
        models=FixedModel(), sink=sink, topics=TOPICS, wall_clock=lambda: T0 + 5,
        retry_sleep=no_sleep,
    )


async def test_one_score_per_customer_after_the_batch() -> None:
    sink = MemorySink()
    records = [raw(0, event_bytes(0, "a", T0)), raw(1, event_bytes(1, "b", T0 + 1)),
               raw(2, event_bytes(2, "a", T0 + 2), ts_ms=2000)]
    stats = await processor(sink).process(records)
    assert (stats.records, stats.valid, stats.applied, stats.scores) == (3, 3, 3, 2)
    scores = {orjson.loads(r.value)["customer_id"]: orjson.loads(r.value)
              for r in sink.on(TOPICS.scores)}
    assert scores["a"]["events_total"] == 2
    assert scores["a"]["last_event_id"] == "e2"
    assert scores["a"]["source_timestamp_ms"] == 2000
    assert scores["a"]["model_version"] == UNTRAINED_VERSION
    assert scores["b"]["ts"] == format_ts(T0 + 1)
    assert scores["a"]["reason"] == "event"
    assert scores["a"]["score_id"] == f"a:e2:{UNTRAINED_VERSION}"
    assert 0.0 <= scores["b"]["score"] <= 1.0
    assert [r.key for r in sink.on(TOPICS.scores)] == [b"a", b"b"]


@pytest.mark.parametrize(
    ("value", "code"),
    [(b"{not json", b"bad_json"), (b"[1,2]", b"not_an_object"), (None, b"empty"),
     (b'{"event_id":"x","customer_id":"c","event_type":"t","ts":"yesterday"}',
      b"bad_timestamp"),
     (b'{"event_id":"x","customer_id":"c","event_type":"t","ts":"2026-01-01T00:00:00Z",'
      b'"value":"12"}', b"bad_field")],
)
async def test_invalid_messages_go_to_dead_letter_and_nothing_else_stops(
        value: bytes | None, code: bytes) -> None:
    sink = MemorySink()
    stats = await processor(sink).process([raw(0, value), raw(1, event_bytes(1, "a"))])
    dead = sink.on(TOPICS.dead_letter)
    assert stats.dead_lettered == 1
    assert stats.scores == 1
    assert dead[0].value == (value or b"")
    headers = dict(dead[0].headers or [])
    assert headers["churn.dlq.code"] == code
    assert headers["churn.dlq.offset"] == b"0"
    assert headers["churn.dlq.reason"]


class FlakyStore:
    """Fails the first ``failures`` calls with a transient error."""

    def __init__(self, failures: int) -> None:
        self.inner = InMemoryFeatureStore(FeatureSettings())
        self.failures = failures

    @property
    def spec(self) -> FeatureSpec:
        return self.inner.spec

    async def apply(self, events: Sequence[CustomerEvent],
                    due: DueUpdates | None = None) -> dict[str, AppliedState]:
        if self.failures:
            self.failures -= 1
            raise TransientError("redis down")
        return await self.inner.apply(events, due)

    async def get(self, customer_id: str) -> dict[str, float]:
        return await self.inner.get(customer_id)


async def test_transient_store_errors_are_retried_until_they_heal() -> None:
    sink = MemorySink()
    store = FlakyStore(failures=3)
    stats = await processor(sink, store).process([raw(0, event_bytes(0, "a"))])
    assert stats.retries == 3
    assert stats.applied == 1
    assert (await store.get("a"))["n"] == 1.0


async def test_dead_letter_of_a_whole_batch_keeps_original_bytes() -> None:
    from streams.errors import InvalidMessage

    sink = MemorySink()
    proc = processor(sink)
    records = [raw(5, b"x"), raw(6, b"y")]
    await proc.dead_letter(records, InvalidMessage("processing_failed", "boom"))
    assert [r.value for r in sink.on(TOPICS.dead_letter)] == [b"x", b"y"]
    assert proc.totals.dead_letter_reasons == {"processing_failed": 2}


async def test_batch_raises_due_times_and_watermarks() -> None:
    from streams.settings import SweepSettings
    from streams.worker.watermarks import Watermarks

    sink = MemorySink()
    store = InMemoryFeatureStore(FeatureSettings())
    marks = Watermarks(SweepSettings(allowed_lateness_s=60, clock="event"))
    proc = EventBatchProcessor(store=store, models=FixedModel(), sink=sink, topics=TOPICS,
                               wall_clock=lambda: T0, rescore_after_s=86400.0, watermarks=marks)
    records = [RawRecord(TOPICS.events, 3, 0, b"a", event_bytes(0, "a", T0 + 10)),
               RawRecord(TOPICS.events, 3, 1, b"a", event_bytes(1, "a", T0 + 5)),
               RawRecord(TOPICS.events, 1, 0, b"b", event_bytes(2, "b", T0 + 7))]
    await proc.process(records)
    assert store.due_entries(3) == {"a": T0 + 10 + 86400.0}
    assert store.due_entries(1) == {"b": T0 + 7 + 86400.0}
    assert (marks.watermark(3), marks.watermark(1)) == (T0 + 10 - 60, T0 + 7 - 60)


async def test_late_batch_is_scored_at_the_newest_event_time_seen() -> None:
    sink = MemorySink()
    proc = processor(sink)
    await proc.process([raw(0, event_bytes(0, "a", T0 + 100))])
    await proc.process([raw(1, event_bytes(1, "a", T0 + 50))])
    last = orjson.loads(sink.on(TOPICS.scores)[-1].value)
    assert last["ts"] == format_ts(T0 + 100)
    assert last["events_total"] == 2


async def test_a_redelivery_split_otherwise_never_gives_a_score_id_other_content() -> None:
    # the CI failure of 2026-12-02: a redelivered batch whose customers the batches after it
    # had advanced re-published "c352:b1208" with the newer state's event count
    sink = MemorySink()
    proc = processor(sink)
    events = [raw(i, event_bytes(i, f"c{i % 3}", T0 + i)) for i in range(30)]
    for start in range(0, 30, 7):
        await proc.process(events[start:start + 7])
    first = len(sink.on(TOPICS.scores))
    redelivered = [await proc.process(events[start:start + 4]) for start in range(10, 30, 4)]
    assert sum(s.applied for s in redelivered) == 0  # all duplicates
    assert sum(s.unscored for s in redelivered) > 0  # states the later batches had advanced
    scores = [orjson.loads(r.value) for r in sink.on(TOPICS.scores)]
    assert len(scores) > first  # the redelivery did re-publish some
    content: dict[str, set[tuple[object, ...]]] = {}
    for s in scores:
        content.setdefault(s["score_id"], set()).add((s["score"], s["events_total"], s["ts"]))
    assert all(len(v) == 1 for v in content.values()), content
    assert {s["score_id"] for s in scores[first:]} <= {s["score_id"] for s in scores[:first]}
