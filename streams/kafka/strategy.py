"""What the consumer runner (:mod:`streams.kafka.runner`) runs: batches and processing strategies.

A process plugs its logic into the runner as a :class:`Strategy` (the shape of arroyo's
``ProcessingStrategy``, made for asyncio and whole batches):

``on_start(runner)``        clients are up; a strategy without a consumer group assigns and
                            seeks its partitions here (``runner.consumer``)
``process(batch)``          the batch's effects (Redis, HTTP, ...); may overlap with the previous
                            batch's when the runner's ``pipeline_depth`` > 1; a
                            :class:`~streams.errors.TransientError` is retried with backoff
``complete(batch, result)`` in batch order: the last stage; returns the records the runner
                            produces (in the batch's transaction, or before its commit)
``failed(batch, error)``    ``process``/``complete`` raised something else (a bug): the records
                            to produce instead (by default the whole batch as dead letters,
                            when ``dead_letter_topic`` is set; else the error stops the run)
``committed(batch)``        its outputs and offsets are durable
``on_assigned``/``on_revoked``  group rebalances; the runner drains the batches in flight
                            (they finish and commit) before ``on_revoked``
``on_stop()``               the run ends (stop, cancel, or an error before a restart)

:class:`Consumer` and :class:`Producer` are the parts of aiokafka's clients the runner and the
strategies use, so that tests can run the runner on an in-memory broker.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from aiokafka.structs import TopicPartition

from streams.dead_letter import dead_letter_record
from streams.errors import InvalidMessage
from streams.records import OutRecord, RawRecord

if TYPE_CHECKING:
    from streams.kafka.runner import Runner

R = TypeVar("R")


@dataclass(frozen=True)
class Batch:
    """Records fetched by one poll (of one partition when the runner splits by partition).

    ``offsets`` holds, per partition, the offset after the batch's last record: what a commit
    stores. ``number`` counts the batches of a runner from 0, in poll order.
    """

    records: Sequence[RawRecord]
    offsets: Mapping[TopicPartition, int] = field(default_factory=dict)
    number: int = 0

    def starts(self) -> dict[TopicPartition, int]:
        """The first offset of the batch in each partition (where a retry seeks back to)."""
        first: dict[TopicPartition, int] = {}
        for r in self.records:
            tp = TopicPartition(r.topic, r.partition)
            if tp not in first or r.offset < first[tp]:
                first[tp] = r.offset
        return first


class Consumer(Protocol):
    """The part of ``aiokafka.AIOKafkaConsumer`` used by the runner and its strategies."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def subscribe(self, topics: list[str], listener: Any = None) -> None: ...
    def assign(self, partitions: list[TopicPartition]) -> None: ...
    def assignment(self) -> set[TopicPartition]: ...
    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Any]]: ...
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    async def seek_to_beginning(self, *partitions: TopicPartition) -> None: ...
    async def position(self, partition: TopicPartition) -> int: ...
    async def end_offsets(self, partitions: list[TopicPartition],
                          ) -> dict[TopicPartition, int]: ...
    async def offsets_for_times(self, timestamps: dict[TopicPartition, int],
                                ) -> dict[TopicPartition, Any]: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def paused(self) -> set[TopicPartition]: ...


class Producer(Protocol):
    """The part of ``aiokafka.AIOKafkaProducer`` used by the runner."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: Any = None) -> Awaitable[Any]: ...
    async def begin_transaction(self) -> None: ...
    async def commit_transaction(self) -> None: ...
    async def abort_transaction(self) -> None: ...
    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int],
                                          group_id: str) -> None: ...


class Strategy(Generic[R]):
    """Base of a processing strategy (see the module docstring); override what you need."""

    #: Where ``failed`` sends the records of a batch that raised (None: the error stops the run).
    dead_letter_topic: str | None = None

    async def on_start(self, runner: Runner[R]) -> None:
        return None

    async def process(self, batch: Batch) -> R:
        raise NotImplementedError

    async def complete(self, batch: Batch, result: R) -> Sequence[OutRecord]:
        return ()

    async def failed(self, batch: Batch, error: Exception) -> Sequence[OutRecord]:
        if self.dead_letter_topic is None:
            raise error
        reason = InvalidMessage("processing_failed", f"{type(error).__name__}: {error}")
        now = time.time()
        return [dead_letter_record(self.dead_letter_topic, r, reason, now)
                for r in batch.records]

    async def committed(self, batch: Batch) -> None:
        return None

    async def on_assigned(self, partitions: frozenset[TopicPartition]) -> None:
        return None

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        return None

    def on_restart(self, error: Exception, delay_s: float) -> None:
        return None

    async def on_stop(self) -> None:
        return None
