"""The worker's warm-up (streams.worker.warmup) on in-memory ports: every step runs, and the
processor, its store and its sink are as they were (the Redis and Kafka side:
tests/integration/test_worker_warmup.py)."""

from __future__ import annotations

import asyncio

from online_models.model import UNTRAINED_VERSION, ModelHandle, make_model
from streams.records import MemorySink
from streams.redis.feature_store import InMemoryFeatureStore
from streams.settings import FeatureSettings, TopicSettings
from streams.worker.processor import EventBatchProcessor, Totals
from streams.worker.warmup import CONNECTIONS, CUSTOMER, WarmGate, made_up_records, warm_up


class FixedModel:
    def __init__(self) -> None:
        self.handle = ModelHandle(UNTRAINED_VERSION, make_model())
        self.calls = 0

    async def current(self) -> ModelHandle:
        self.calls += 1
        return self.handle


class Pings:
    def __init__(self) -> None:
        self.count = 0

    async def ping(self) -> bool:
        self.count += 1
        return True


async def test_warm_up_runs_every_step_and_changes_nothing() -> None:
    sink, store, models, client = MemorySink(), InMemoryFeatureStore(FeatureSettings()), \
        FixedModel(), Pings()
    proc = EventBatchProcessor(store=store, models=models, sink=sink, topics=TopicSettings())
    warmed = await warm_up(proc, client, store, None, None)
    assert warmed.failed == {}
    assert set(warmed.ms) == {"redis connections", "score path", "feature scripts",
                              "snapshot script", "kafka metadata"}
    assert client.count == CONNECTIONS
    assert models.calls == 1  # the model in use was loaded and scored with
    assert proc.totals == Totals()
    assert sink.records == []
    assert await store.get(CUSTOMER) == {}


async def test_made_up_records_are_valid_events() -> None:
    proc = EventBatchProcessor(store=InMemoryFeatureStore(FeatureSettings()),
                               models=FixedModel(), sink=MemorySink(), topics=TopicSettings())
    batch = proc.prepare(made_up_records(proc))
    assert batch.stats.dead_lettered == 0 and len(batch.events) == len(batch.records) == 3


async def test_a_failing_step_is_recorded_not_raised() -> None:
    class Down:
        async def ping(self) -> bool:
            raise ConnectionError("refused")

    proc = EventBatchProcessor(store=InMemoryFeatureStore(FeatureSettings()),
                               models=FixedModel(), sink=MemorySink(), topics=TopicSettings())
    warmed = await warm_up(proc, Down(), None, None, None)
    assert list(warmed.failed) == ["redis connections"]
    assert "score path" in warmed.ms


async def test_gate_starts_once_warm_or_after_its_wait() -> None:
    ready = asyncio.Event()
    gate = WarmGate(ready, wait_s=30.0)
    starting = asyncio.create_task(gate.on_start())
    await asyncio.sleep(0)
    assert not starting.done()
    ready.set()
    await asyncio.wait_for(starting, 5.0)
    await asyncio.wait_for(WarmGate(asyncio.Event(), wait_s=0.01).on_start(), 5.0)
