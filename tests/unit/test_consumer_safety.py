"""The events runner never lets an exception escape and never loses a batch."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from online_models.model import UNTRAINED_VERSION, ModelHandle, make_model
from streams.kafka.strategy import Batch as RunnerBatch
from streams.records import MemorySink, RawRecord
from streams.redis.feature_store import InMemoryFeatureStore
from streams.settings import FeatureSettings, Settings, TopicSettings
from streams.worker.consumer import EventConsumer, EventStrategy
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
    strategy = EventStrategy(broken)
    first = RunnerBatch([record(0), record(1)], number=0)
    with pytest.raises(ZeroDivisionError) as failure:
        await strategy.process(first)
    assert await strategy.failed(first, failure.value) == ()  # published by the processor
    dead = sink.on(TOPICS.dead_letter)
    assert [d.value for d in dead] == [record(0).value, record(1).value]
    assert dict(dead[0].headers or [])["churn.dlq.code"] == b"processing_failed"
    assert b"a bug in scoring" in dict(dead[0].headers or [])["churn.dlq.reason"]

    # the failed batch released its turn: the next batch applies and publishes
    strategy.processor = EventBatchProcessor(InMemoryFeatureStore(FeatureSettings()),
                                             FixedModel(), sink, TOPICS)
    second = RunnerBatch([record(2)], number=1)
    prepared = await asyncio.wait_for(strategy.process(second), 5)
    await strategy.complete(second, prepared)
    assert len(sink.on(TOPICS.scores)) == 1


async def test_batches_apply_in_poll_order_even_when_a_later_one_is_ready_first() -> None:
    steps: list[str] = []
    gate = asyncio.Event()

    class SlowFirst(EventBatchProcessor):
        async def apply(self, batch: Batch) -> None:
            steps.append(f"start {len(batch.records)}")
            if len(batch.records) == 1:
                await gate.wait()  # the first batch's Redis call is slow
            await super().apply(batch)
            steps.append(f"end {len(batch.records)}")

    strategy = EventStrategy(SlowFirst(InMemoryFeatureStore(FeatureSettings()), FixedModel(),
                                       MemorySink(), TOPICS))
    first = asyncio.create_task(strategy.process(RunnerBatch([record(0)], number=0)))
    second = asyncio.create_task(strategy.process(RunnerBatch([record(1), record(2)],
                                                              number=1)))
    for _ in range(10):
        await asyncio.sleep(0)
    assert steps == ["start 1"]  # the second waits for its turn
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert steps == ["start 1", "end 1", "start 2", "end 2"]


def test_the_consumer_runs_on_the_runner_with_two_batches_in_flight() -> None:
    consumer = EventConsumer(Settings(), lambda s: None)  # type: ignore[arg-type, return-value]
    assert consumer.runner.config.pipeline_depth == 2
    assert consumer.runner.config.commit == "offsets"
    assert consumer.runner.config.stall_timeout_s == Settings().worker.stall_timeout_s == 60.0


async def test_a_restarted_runner_gives_the_processor_its_new_producer() -> None:
    """The events runner restarts its clients on failure; the processor (built once, with its
    caches) must publish through the new producer, not the closed one."""
    built: list[EventBatchProcessor] = []

    def make(sink: MemorySink) -> EventBatchProcessor:
        built.append(EventBatchProcessor(InMemoryFeatureStore(FeatureSettings()), FixedModel(),
                                         sink, TOPICS))
        return built[-1]

    consumer = EventConsumer(Settings(), make)  # type: ignore[arg-type]
    assert consumer.runner.config.restart is not None
    first, second = MemorySink(), MemorySink()
    consumer.runner.sink = first  # type: ignore[assignment]  # what each run sets up first
    await consumer.strategy.on_start(consumer.runner)
    consumer.runner.sink = second  # type: ignore[assignment]
    await consumer.strategy.on_start(consumer.runner)
    assert len(built) == 1 and built[0].sink is second
