"""The worker's warm-up: the events hot path run once before the first batch is read.

A fresh worker's first batch cost more than later ones of the same size: a new Redis connection
(redis-py reads its own package metadata to announce its version), the ``SCRIPT LOAD`` of the
feature cache's and the observe scripts, the first calls of the feature update, scoring and
MessagePack, and the producer's metadata of the scores topic. In
``bench/bench_latency_stages.py --rate 5000`` (alternated runs, README "Performance") the first
batch's apply took 7-13 ms without this and 2-4 ms with it, its publish 2-37 and 1.5-2.3 ms.

:func:`warm_up` pays these before the first batch, with operations that change no state:
connections opened with ``PING``, scripts loaded with ``SCRIPT LOAD``, the snapshot count and
feature schema read (not written), the producer's metadata of the scores and dead-letter
topics fetched and their leaders connected, and a made-up batch decoded, applied, scored and
encoded in memory (nothing cached, stored, published or counted). Every step is best effort: a
dependency that does not answer is logged and left to the first batch, as before.

:class:`WarmGate` holds Faust's ``[^Worker]: Ready`` until the warm-up is done (at most
``WARM_WAIT_S``), so that "Ready" means the events path is built and warm.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import mode
from aiokafka.structs import TopicPartition

from online_models.features import apply_event
from online_models.observations import Observation
from streams.contracts import CustomerEvent, encode
from streams.records import RawRecord
from streams.redis.feature_cache import CachedFeatureStore
from streams.redis.observation_store import RedisObservationStore
from streams.redis.packed_state import feature_schema, pack_snapshot
from streams.worker.processor import EventBatchProcessor
from streams.worker.scoring import ScoreRequest, build_scores

log = logging.getLogger(__name__)
CONNECTIONS = 3
"""Redis connections opened ahead: a batch's apply overlaps the previous one's observe
(``PIPELINE_DEPTH`` 2), and the model poll and the timers share the pool."""
WARM_WAIT_S = 10.0
CUSTOMER = "warm-up"
KINDS: tuple[tuple[str, float | None], ...] = (
    ("session", None), ("support_ticket", None), ("purchase", 19.9))


@dataclass
class Warmed:
    """What the warm-up did: milliseconds per step, and the steps that failed (skipped)."""

    ms: dict[str, float] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    async def step(self, name: str, op: Callable[[], Awaitable[Any]]) -> None:
        began = time.perf_counter()
        try:
            await op()
        except Exception as exc:  # best effort: the first batch pays what is not warm
            self.failed[name] = f"{type(exc).__name__}: {exc}"
        self.ms[name] = (time.perf_counter() - began) * 1000


def made_up_records(processor: EventBatchProcessor) -> list[RawRecord]:
    """A few valid events of a made-up customer, as the consumer hands records over."""
    now = processor.limits.clock()
    return [RawRecord(processor.topics.events, 0, i, CUSTOMER.encode(),
                      encode(CustomerEvent(f"{CUSTOMER}-{i}", CUSTOMER, kind, now - len(KINDS) + i,
                                           value).to_wire()), int(now * 1000))
            for i, (kind, value) in enumerate(KINDS)]


async def rehearse(processor: EventBatchProcessor) -> tuple[str, ...]:
    """The pure stages on a made-up batch, in memory: decode, feature update, feature vector,
    score and drivers with the model in use, score records and the snapshot packed. Returns the
    feature names (the snapshot schema). Changes no counter of the processor."""
    batch = processor.prepare(made_up_records(processor))
    spec = processor.spec
    state: dict[str, float] = {}
    for event in batch.events:
        state = apply_event(state, event.event_type, event.ts, event.value, spec)
    handle = await processor.models.current()
    last = batch.events[-1]
    request: ScoreRequest = (CUSTOMER, state, last.ts, last.event_id, len(batch.events), 0,
                             last.ts)
    scored = build_scores([request], handle, spec, processor.scorers, reason="event",
                          scored_at="1970-01-01T00:00:00.000+00:00")
    processor.score_records(scored)
    s = scored[0]
    names = tuple(s.x)
    pack_snapshot(Observation(CUSTOMER, s.t, s.x, s.record["score"], handle.version),
                  feature_schema(names))
    return names


async def warm_up(processor: EventBatchProcessor, client: Any, store: Any, observations: Any,
                  producer: Any) -> Warmed:
    """Warm the hot path of ``processor`` (module docstring); changes no stored state."""
    warmed = Warmed()
    names: tuple[str, ...] = ()

    async def pure() -> None:
        nonlocal names
        names = await rehearse(processor)

    async def connections() -> None:
        await asyncio.gather(*(client.ping() for _ in range(CONNECTIONS)))

    async def feature_store() -> None:
        if isinstance(store, CachedFeatureStore):
            event = CustomerEvent(CUSTOMER, CUSTOMER, "session", processor.limits.clock())
            await store.warm(event)

    async def snapshots() -> None:
        if isinstance(observations, RedisObservationStore) and names:
            await observations.warm(names)

    async def kafka() -> None:
        if producer is None:
            return
        for topic in (processor.topics.scores, processor.topics.dead_letter):
            for partition in await producer.partitions_for(topic):
                leader = producer.client.cluster.leader_for_partition(
                    TopicPartition(topic, partition))
                if leader is not None and leader >= 0:
                    await producer.client.ready(leader)

    await warmed.step("redis connections", connections)
    await warmed.step("score path", pure)
    await warmed.step("feature scripts", feature_store)
    await warmed.step("snapshot script", snapshots)
    await warmed.step("kafka metadata", kafka)
    return warmed


class WarmGate(mode.Service):
    """A Faust service that starts once ``ready`` is set (or ``WARM_WAIT_S`` passed): Faust
    logs ``[^Worker]: Ready`` only after its services started."""

    def __init__(self, ready: asyncio.Event, wait_s: float = WARM_WAIT_S) -> None:
        super().__init__()
        self._ready = ready
        self._wait_s = wait_s

    async def on_start(self) -> None:
        try:
            await asyncio.wait_for(self._ready.wait(), self._wait_s)
        except TimeoutError:
            log.warning("events path not warm after %.0f s; ready anyway", self._wait_s)
