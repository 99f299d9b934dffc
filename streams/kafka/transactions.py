"""Exactly-once output of a batch: its records and offsets in one Kafka transaction.

One transactional producer per input partition (``transactional_id(partition)``), the
pre-KIP-447 pattern: aiokafka's ``send_offsets_to_transaction`` takes a group id, not the
consumer's generation, so fencing by consumer generation is not available. A new owner of a
partition initialises the same transactional id, which aborts the previous owner's open
transaction and fences it. Readers use ``isolation_level="read_committed"`` and see a batch
entirely or not at all.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from streams.kafka.strategy import Batch, Producer
from streams.records import OutRecord

log = logging.getLogger(__name__)


class Transactions:
    """The transactional producers of the partitions a runner owns (started on first use)."""

    def __init__(self, make_producer: Callable[[str | None], Producer],
                 transactional_id: Callable[[TopicPartition], str], group_id: str, name: str,
                 retry_backoff_s: float, sleep: Callable[[float], Any]) -> None:
        self._make_producer = make_producer
        self._transactional_id = transactional_id
        self._group_id = group_id
        self._name = name
        self._backoff_s = retry_backoff_s
        self._sleep = sleep
        self._producers: dict[TopicPartition, Producer] = {}
        self.aborted = 0

    async def transact(self, batch: Batch, outputs: Sequence[OutRecord],
                       seek: Callable[[TopicPartition, int], None]) -> bool:
        """Produce ``outputs`` and commit ``batch.offsets`` atomically; False when aborted.

        An aborted batch is read again: its producer is dropped, its partition sought back
        to the batch's first offset (``seek``) and fetched after the retry backoff.
        """
        (tp,) = batch.offsets  # one partition per batch (checked by RunnerConfig)
        try:
            producer = await self._producer_of(tp)
            await producer.begin_transaction()
            try:
                for r in outputs:
                    await producer.send(r.topic, r.value, key=r.key, headers=r.headers)
                await producer.send_offsets_to_transaction(dict(batch.offsets), self._group_id)
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.abort_transaction()
                raise
            await producer.commit_transaction()
        except KafkaError as exc:
            self.aborted += 1
            start = batch.starts()[tp]
            log.warning("%s: transaction of %s failed, re-reading from offset %d: %r",
                        self._name, tp, start, exc)
            await self.drop([tp])
            seek(tp, start)
            await self._sleep(self._backoff_s)
            return False
        return True

    async def _producer_of(self, tp: TopicPartition) -> Producer:
        producer = self._producers.get(tp)
        if producer is None:
            producer = self._make_producer(self._transactional_id(tp))
            await producer.start()
            self._producers[tp] = producer
        return producer

    async def drop(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Stop the producers of ``partitions`` (all when None)."""
        for tp in list(self._producers if partitions is None else partitions):
            producer = self._producers.pop(tp, None)
            if producer is not None:
                with contextlib.suppress(Exception):
                    await producer.stop()
