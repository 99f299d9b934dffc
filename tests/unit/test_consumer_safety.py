"""The events runner never lets an exception escape and never loses a batch."""

from __future__ import annotations

import asyncio

import orjson

from online_models.model import UNTRAINED_VERSION, ModelHandle, make_model
from streams.records import MemorySink, RawRecord
from streams.redis.feature_store import InMemoryFeatureStore
from streams.settings import FeatureSettings, Settings, TopicSettings
from streams.worker.consumer import EventConsumer
from streams.worker.processor import Batch, EventBatchProcessor

TOPICS = TopicSettings()


class FixedModel:
    async def current(self) -> ModelHandle:
        return ModelHandle(UNTRAINED_VERSION, make_model())


class ExplodingProcessor(EventBatchProcessor):
    def score(self, batch: Batch) -> None:
        raise ZeroDivisionError("a bug in scoring")


def record(offset: int) -> RawRecord:
    value = orjson.dumps({"event_id": f"e{offset}", "customer_id": "c", "event_type": "x",
                          "ts": "2026-01-01T00:00:00Z"})
    return RawRecord(TOPICS.events, 0, offset, b"c", value, 1)


async def test_a_failing_batch_is_dead_lettered_whole_and_the_next_batch_still_runs() -> None:
    sink = MemorySink()
    broken = ExplodingProcessor(InMemoryFeatureStore(FeatureSettings()), FixedModel(), sink,
                                TOPICS)
    runner = EventConsumer(Settings(), lambda s: broken)
    loop = asyncio.get_running_loop()
    first_applied: asyncio.Future[None] = loop.create_future()
    batch = broken.prepare([record(0), record(1)])
    await runner._complete(broken, batch, {}, None, first_applied, None)
    dead = sink.on(TOPICS.dead_letter)
    assert [d.value for d in dead] == [record(0).value, record(1).value]
    assert dict(dead[0].headers or [])["churn.dlq.code"] == b"processing_failed"
    assert b"a bug in scoring" in dict(dead[0].headers or [])["churn.dlq.reason"]
    assert first_applied.done()

    healthy_sink = MemorySink()
    healthy = EventBatchProcessor(InMemoryFeatureStore(FeatureSettings()), FixedModel(),
                                  healthy_sink, TOPICS)
    second = healthy.prepare([record(2)])
    await runner._complete(healthy, second, {}, first_applied, loop.create_future(), None)
    assert len(healthy_sink.on(TOPICS.scores)) == 1
