"""Fast publishing of pre-encoded records: aiokafka batches per partition, acknowledged prefix.

The producer SDK (:mod:`streams.kafka.producer`, kafka-python ``send``) tops out near 20k records/s
on our machines. Here whole record batches are built per partition with aiokafka's
``create_batch`` / ``send_batch`` (records appended by its C builder) and handed to an
idempotent producer (``acks=all``), which keeps well over 100k records/s from one process.

* Keys go to ``murmur2(key) % partitions``, exactly what the Java client, kafka-python and
  aiokafka's default partitioner choose, so a customer's records land on the partition any
  other producer would use.
* Per-key order holds: a customer's records keep their input order inside a partition's batch,
  batches of a partition are queued in order, and the producer has one request in flight per
  partition (idempotence also makes its retries duplicate-free).
* Records are numbered in input order; :attr:`BatchPublisher.acknowledged` is the length of the
  longest prefix the broker has acknowledged. A resumable replay checkpoints that number.

:func:`pump` drives a publisher from an iterable of :class:`Chunk`\\ s under a pacer
(:mod:`streams.kafka.pacing`) and a stop flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from streams.errors import TransientError
from streams.kafka.chunk import Chunk
from streams.kafka.clients import new_producer
from streams.kafka.pacing import Pacer
from streams.settings import KafkaSettings

#: Largest slice handed to the publisher at once (bounds batch building latency).
MAX_SLICE = 20_000
#: Records submitted but not yet acknowledged before ``send`` waits (backpressure).
MAX_UNACKED = 200_000
BATCH_BYTES = 1 << 20
LEADER_WAIT_S = 5.0


def java_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner picks for a non-null key.

    >>> java_partition(b"c-000042", 4), java_partition(b"", 4)
    (1, 1)
    """
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


class KeyHashes:
    """``murmur2(key) & 0x7FFFFFFF`` of each key, cached (murmur2 is pure Python; keys repeat
    a lot); the cache is emptied when it grows past ``max_cached`` keys. The hash does not
    depend on a partition count, so one cache serves any topic."""

    def __init__(self, max_cached: int = 1_000_000) -> None:
        self.max_cached = max_cached
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        h = self._hashes.get(key)
        if h is None:
            if len(self._hashes) >= self.max_cached:
                self._hashes.clear()
            h = self._hashes[key] = int(murmur2(key)) & 0x7FFFFFFF
        return h


class KeyPartitioner:
    """:func:`java_partition` with each key's hash cached (:class:`KeyHashes`).

    Parameters
    ----------
    partitions : int
        Partition count of the topic.
    max_cached : int
        The cache is emptied when it grows past this many keys.
    """

    def __init__(self, partitions: int, max_cached: int = 1_000_000) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self._hash = KeyHashes(max_cached)

    def __call__(self, key: bytes) -> int:
        return self._hash(key) % self.partitions


class CachedPartitioner:
    """aiokafka's default partitioner (``partitioner=`` of ``AIOKafkaProducer``) with each
    key's hash cached: the same partition as :class:`aiokafka.partitioner.DefaultPartitioner`
    for every key and partition list, without its pure-Python murmur2 on every record (a
    worker sends one score per event, and customers repeat).

    The cache holds ``murmur2(key) & 0x7FFFFFFF``, which does not depend on the topic or its
    partition count, so it never goes stale: the partition is still taken from the partition
    list of each call. A record without a key gets a random available partition, as before.

    >>> p = CachedPartitioner()
    >>> p(b"c-000042", [0, 1, 2, 3], [0, 1, 2, 3]) == java_partition(b"c-000042", 4)
    True
    >>> p(b"c-000042", [0, 1, 2], [0, 1]) == java_partition(b"c-000042", 3)
    True
    """

    def __init__(self, max_cached: int = 1_000_000) -> None:
        self._hash = KeyHashes(max_cached)

    def __call__(self, key: bytes | None, all_partitions: list[int],
                 available: list[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        return all_partitions[self._hash(key) % len(all_partitions)]


class BatchPublisher:
    """Publishes :class:`Chunk` slices to ``topics`` and tracks the acknowledged prefix.

    Build it with :meth:`open`; use it from one task. ``submitted`` counts records handed over,
    ``acknowledged`` the longest prefix of them the broker has confirmed.

    Parameters
    ----------
    producer : AIOKafkaProducer
        A started producer (idempotent, ``acks="all"``).
    topics : sequence of str
        Topic of each record kind (``topics[chunk.kinds[i]]``).
    partitions : sequence of int
        Partition count of each topic.
    max_unacked : int
        ``send`` waits while more records than this are unacknowledged.
    """

    def __init__(self, producer: AIOKafkaProducer, topics: Sequence[str],
                 partitions: Sequence[int], max_unacked: int = MAX_UNACKED) -> None:
        self._producer = producer
        self.topics = tuple(topics)
        self._partitioners = [KeyPartitioner(n) for n in partitions]
        self.max_unacked = max_unacked
        self.submitted = 0
        self.acknowledged = 0
        self._pending: deque[tuple[int, asyncio.Future[Any]]] = deque()

    @classmethod
    async def open(cls, kafka: KafkaSettings, topics: Sequence[str],
                   client_id: str = "churnpulse-publisher") -> BatchPublisher:
        """Start an idempotent producer and read the topics' partition counts."""
        producer = new_producer(kafka, acks="all", enable_idempotence=True,
                                    linger_ms=0, max_batch_size=BATCH_BYTES,
                                    max_request_size=4 * BATCH_BYTES, client_id=client_id)
        try:
            await producer.start()
            counts = []
            for topic in topics:
                parts = await producer.partitions_for(topic)
                if not parts:
                    raise TransientError(f"topic {topic!r} has no partitions (does it exist?)")
                counts.append(len(parts))
            await _await_leaders(producer, topics)
        except KafkaError as exc:
            await producer.stop()
            raise TransientError(
                f"cannot publish to Kafka at {kafka.bootstrap_servers}: {exc!r}") from exc
        except BaseException:
            await producer.stop()
            raise
        return cls(producer, topics, counts)

    def partition(self, kind: int, key: bytes) -> int:
        """Partition of ``key`` in ``topics[kind]``."""
        return self._partitioners[kind](key)

    async def send(self, chunk: Chunk, start: int = 0, stop: int | None = None) -> None:
        """Queue records ``start:stop`` of ``chunk`` (in order); returns before they are acked."""
        stop = len(chunk) if stop is None else stop
        if stop <= start:
            return
        producer, partitioners = self._producer, self._partitioners
        batches: dict[tuple[int, int], Any] = {}
        futures: list[asyncio.Future[Any]] = []
        try:
            for kind, key, value in zip(chunk.kinds[start:stop], chunk.keys[start:stop],
                                        chunk.values[start:stop], strict=True):
                tp = (kind, partitioners[kind](key))
                batch = batches.get(tp)
                if batch is None:
                    batch = batches[tp] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await self._send_batch(batch, tp))
                    batch = batches[tp] = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            for tp, batch in batches.items():
                futures.append(await self._send_batch(batch, tp))
        except KafkaError as exc:
            raise TransientError(f"publishing failed: {exc!r}") from exc
        self.submitted += stop - start
        self._pending.append((self.submitted, asyncio.gather(*futures)))
        self.poll()
        while self._pending and self.submitted - self.acknowledged > self.max_unacked:
            await asyncio.wait([self._pending[0][1]])
            self.poll()

    async def _send_batch(self, batch: Any, tp: tuple[int, int]) -> asyncio.Future[Any]:
        batch.close()
        future: asyncio.Future[Any] = await self._producer.send_batch(
            batch, self.topics[tp[0]], partition=tp[1])
        return future

    def poll(self) -> int:
        """Advance :attr:`acknowledged` over finished sends (raises if one failed)."""
        while self._pending and self._pending[0][1].done():
            end, future = self._pending.popleft()
            exc = future.exception()
            if exc is not None:
                self._discard_pending()
                raise TransientError(f"the broker did not acknowledge records up to #{end}: "
                                     f"{exc!r}") from exc
            self.acknowledged = end
        return self.acknowledged

    async def flush(self) -> int:
        """Wait until every submitted record is acknowledged; returns :attr:`acknowledged`."""
        while self._pending:
            await asyncio.wait([self._pending[0][1]])
            self.poll()
        return self.acknowledged

    def _discard_pending(self) -> None:
        for _, future in self._pending:
            future.cancel()
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning
        self._pending.clear()

    async def close(self) -> None:
        """Stop the producer (records not yet acknowledged are abandoned)."""
        self._discard_pending()
        await self._producer.stop()


async def _await_leaders(producer: AIOKafkaProducer, topics: Sequence[str],
                         timeout_s: float = LEADER_WAIT_S) -> None:
    """Wait (briefly) until every partition has a leader: a topic created a moment ago has
    none yet, and the first sends would be retried with NotLeaderForPartition warnings."""
    cluster = producer.client.cluster
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        available = [cluster.available_partitions_for_topic(t) or set() for t in topics]
        if all(len(a) == len(cluster.partitions_for_topic(t) or ())
               for a, t in zip(available, topics, strict=True)):
            return
        await producer.client.force_metadata_update()
        await asyncio.sleep(0.05)


@dataclass
class PumpStats:
    """Where a :func:`pump` stands; passed to the progress callback and returned at the end."""

    sent: int = 0
    acknowledged: int = 0
    last_ts_ms: int | None = None
    interrupted: bool = False
    started: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


def _never() -> bool:
    return False


async def pump(
    chunks: Iterable[Chunk],
    publisher: BatchPublisher,
    pacer: Pacer,
    *,
    stop: Callable[[], bool] = _never,
    on_progress: Callable[[PumpStats], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    max_slice: int = MAX_SLICE,
) -> PumpStats:
    """Publish every chunk in order under ``pacer`` until done or ``stop()`` is true.

    Returns once everything sent is acknowledged (also when stopped: ``interrupted`` is then
    set and ``acknowledged`` is exact). A failed send raises
    :class:`~streams.errors.TransientError`; ``publisher.acknowledged`` then still tells how
    far the broker confirmed.
    """
    stats = PumpStats(acknowledged=publisher.acknowledged)
    base = publisher.submitted
    for chunk in chunks:
        pos = 0
        while pos < len(chunk):
            if stop():
                stats.interrupted = True
                break
            now = clock()
            n = pacer.due(now, publisher.submitted, chunk.ts_ms, pos)
            if n <= 0:
                stats.acknowledged = publisher.poll()
                if on_progress is not None:
                    on_progress(stats)
                wait = pacer.wait_s(now, publisher.submitted, chunk.ts_ms, pos)
                await asyncio.sleep(max(wait, 0.0005))
                continue
            n = min(n, max_slice)
            await publisher.send(chunk, pos, pos + n)
            pos += n
            stats.sent = publisher.submitted - base
            stats.last_ts_ms = chunk.ts_ms[pos - 1]
            stats.acknowledged = publisher.acknowledged
            if on_progress is not None:
                on_progress(stats)
        if stats.interrupted:
            break
    stats.acknowledged = await publisher.flush()
    if on_progress is not None:
        on_progress(stats)
    return stats


def publish_chunks(
    kafka: KafkaSettings,
    topics: Sequence[str],
    chunks: Iterable[Chunk],
    pacer: Pacer,
    *,
    start: int = 0,
    stop: Callable[[], bool] | None = None,
    on_progress: Callable[[PumpStats], None] | None = None,
    on_exit: Callable[[int], None] | None = None,
) -> PumpStats:
    """Run :func:`pump` in a fresh event loop, from synchronous code.

    Records are numbered from ``start`` (a resumed replay). In the main thread, the first
    Ctrl-C stops cleanly (what was sent is flushed, ``interrupted`` is set) and a second one
    raises KeyboardInterrupt. ``on_exit(acknowledged)`` runs last, whatever happened (a
    checkpoint writer).
    """
    interrupted = threading.Event()

    def stopping() -> bool:
        return interrupted.is_set() or (stop is not None and stop())

    async def main() -> PumpStats:
        loop = asyncio.get_running_loop()
        in_main = threading.current_thread() is threading.main_thread()

        def on_sigint() -> None:
            interrupted.set()
            loop.remove_signal_handler(signal.SIGINT)  # a second Ctrl-C raises

        if in_main:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        publisher: BatchPublisher | None = None
        try:
            publisher = await BatchPublisher.open(kafka, topics)
            publisher.submitted = publisher.acknowledged = start
            return await pump(chunks, publisher, pacer, stop=stopping, on_progress=on_progress)
        finally:
            if on_exit is not None:
                on_exit(publisher.acknowledged if publisher is not None else start)
            if publisher is not None:
                await publisher.close()
            if in_main:
                with contextlib.suppress(RuntimeError):
                    loop.remove_signal_handler(signal.SIGINT)

    return asyncio.run(main())
