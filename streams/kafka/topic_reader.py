"""Reading a whole topic once, committed records only (reports, tests, benchmarks).

Runs on the consumer runner (:mod:`streams.kafka.runner`) without a consumer group and without
commits: :class:`_ReadToEnd` assigns every partition, seeks to the beginning, notes the end
offsets and stops the runner once every partition's position reached them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka.structs import TopicPartition

from streams.errors import TransientError
from streams.kafka.clients import new_consumer
from streams.kafka.runner import Runner, RunnerConfig
from streams.kafka.strategy import Batch, Strategy
from streams.settings import Settings

Pairs = list[tuple[bytes | None, bytes | None]]


class _TimedOut(Exception):
    pass


class _ReadToEnd(Strategy[None]):
    def __init__(self, topic: str, timeout_s: float) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        self.out: Pairs = []
        self._tps: list[TopicPartition] = []
        self._ends: dict[TopicPartition, int] = {}
        self._runner: Runner[None] | None = None
        self._deadline = 0.0

    async def on_start(self, runner: Runner[None]) -> None:
        self._runner = runner
        consumer: Any = runner.consumer
        # consumer.topics() fetches metadata without keeping it; this keeps the partitions
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(self.topic) or set()
        self._tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self._deadline = time.monotonic() + self.timeout_s
        if not self._tps:
            runner.stop()
            return
        consumer.assign(self._tps)
        await consumer.seek_to_beginning(*self._tps)
        self._ends = await consumer.end_offsets(self._tps)
        if not await self._behind():
            runner.stop()

    async def process(self, batch: Batch) -> None:
        self.out.extend((r.key, r.value) for r in batch.records)
        assert self._runner is not None
        if not await self._behind():
            self._runner.stop()
        elif time.monotonic() > self._deadline:
            # not a TransientError: the runner would retry that; read_topic turns it into one
            raise _TimedOut(f"timed out reading {self.topic} to its end ({len(self.out)} read)")

    async def _behind(self) -> bool:
        assert self._runner is not None
        consumer = self._runner.consumer
        return any([await consumer.position(tp) < self._ends[tp] for tp in self._tps])


async def read_topic(settings: Settings, topic: str, timeout_s: float = 60.0) -> Pairs:
    """``(key, value)`` of every committed record of ``topic``, up to its end now.

    Reads with ``isolation_level="read_committed"`` up to the last stable offset of each
    partition, so records of aborted transactions are never returned. Raises
    :class:`TransientError` when the end is not reached within ``timeout_s``.
    """
    reader = _ReadToEnd(topic, timeout_s)
    config = RunnerConfig(name=f"read {topic}", batch_size=10000, poll_timeout_s=0.2,
                          commit="none", empty_batches=True)

    def consumer() -> Any:
        return new_consumer(settings.kafka, group_id=None, enable_auto_commit=False,
                            isolation_level="read_committed", auto_offset_reset="earliest",
                            client_id="churnpulse-report")

    try:
        await Runner(config, reader, consumer).run()
    except _TimedOut as exc:
        raise TransientError(str(exc)) from None
    return reader.out


def read_topic_sync(settings: Settings, topic: str, timeout_s: float = 60.0) -> Pairs:
    return asyncio.run(read_topic(settings, topic, timeout_s))
