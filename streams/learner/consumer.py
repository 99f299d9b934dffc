"""The learner's label consumer on the consumer runner (:mod:`streams.kafka.runner`).

No consumer group and no Kafka commits: the label offsets live in the learner's checkpoint, so
every partition of the labels topic is assigned and sought to its checkpointed offset (or the
beginning). Every poll, also an empty one, is one learner step (:meth:`LearnerService.step`):

1. the watermark is read first, then the labels' end offsets, then labels are fetched: once
   every label published before the watermark was read, nothing can still turn a snapshot
   positive, and the step may resolve negatives (``caught_up``);
2. forget requests are served, the step runs, and the Redis lock is renewed; a lost lock (or
   any error of the step) ends the run, as a second learner must never write.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiokafka.structs import TopicPartition

from streams.errors import ConfigurationError, TransientError
from streams.kafka.clients import topic_partitions
from streams.kafka.runner import Runner
from streams.kafka.strategy import Batch, Strategy

if TYPE_CHECKING:
    from streams.learner.service import LearnerService


class StepFailed(Exception):
    """A learner step failed; the learner stops and restarts from its checkpoint."""


class LabelStrategy(Strategy[None]):
    def __init__(self, service: LearnerService, stop: asyncio.Event,
                 renew: Callable[[], Any]) -> None:
        self._service = service
        self._stop = stop
        self._renew = renew
        self._runner: Runner[None] | None = None
        self._tps: list[TopicPartition] = []
        self._mark: float | None = None
        self._ends: dict[TopicPartition, int] = {}

    async def on_start(self, runner: Runner[None]) -> None:
        self._runner = runner
        consumer = runner.consumer
        topic = self._service.settings.topics.labels
        state = self._service.state
        assert state is not None
        partitions = await topic_partitions(consumer, topic)
        self._tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(self._tps)
        for tp in self._tps:
            if tp.partition in state.offsets:
                consumer.seek(tp, state.offsets[tp.partition])
            else:
                await consumer.seek_to_beginning(tp)
        await self._before_poll()

    async def _before_poll(self) -> None:
        assert self._runner is not None
        self._mark = await self._service.board.slowest()
        self._ends = await self._runner.consumer.end_offsets(self._tps)

    async def process(self, batch: Batch) -> None:
        service = self._service
        assert self._runner is not None
        try:
            caught_up = await self._caught_up(list(batch.records))
            await service.serve_forgets()
            await service.step(list(batch.records), self._runner.producer, self._mark,
                               caught_up)
        except TransientError as exc:  # not retried: the step may have moved state already
            raise StepFailed(f"learner step failed: {exc}") from exc
        if not await self._renew():
            raise ConfigurationError("lost the learner lock")
        if self._stop.is_set():
            self._runner.stop()
            return
        await self._before_poll()

    async def _caught_up(self, records: list[Any]) -> bool:
        assert self._runner is not None
        state = self._service.state
        assert state is not None
        read = dict(state.offsets)
        for msg in records:
            read[msg.partition] = msg.offset + 1
        for tp in self._tps:
            position = read.get(tp.partition)
            if position is None:
                position = await self._runner.consumer.position(tp)
            if position < self._ends.get(tp, 0):
                return False
        return True
