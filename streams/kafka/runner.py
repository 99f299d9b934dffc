"""The one consumer loop: poll a batch → process → produce → commit, for every process.

Modelled on arroyo's ``StreamProcessor``: the runner owns the Kafka clients, the poll loop,
rebalances, ordering, commits, transactions, restarts and shutdown; a
:class:`~streams.kafka.strategy.Strategy` owns what a batch means. Per poll:

1. wait until fewer than ``pipeline_depth`` steps are in flight, then poll up to
   ``batch_size`` records (paused partitions are not fetched);
2. make the step's batches: one for the whole poll, or one per partition
   (``per_partition``, required for transactions); records of a partition revoked meanwhile
   are dropped (its next owner reads them);
3. ``process`` every batch of the step (concurrently), retrying
   :class:`~streams.errors.TransientError` with backoff and no give-up; a step may overlap the
   previous step's processing, never its completion;
4. in step order: ``complete`` (or ``failed``), then by ``commit`` mode

   * ``"offsets"``: produce the outputs through an idempotent producer and wait for the
     broker's acknowledgement, then commit the offsets (at-least-once: effects are idempotent;
     a failed commit is logged, the batch is read again by the next owner);
   * ``"transaction"``: outputs and offsets in ONE transaction of the partition's own
     transactional producer (``send_offsets_to_transaction``), the pre-KIP-447 pattern: a new
     owner of the partition initialises the same transactional id, which fences the previous
     one. A failed transaction is aborted, the producer dropped, the partition sought back to
     the batch's first offset and fetched again after ``retry_backoff_s``;
   * ``"none"``: outputs are produced, offsets are kept by the strategy (or nowhere).

Revocation waits until the steps in flight are committed (``drain``), then calls the strategy
and drops the revoked partitions' transactional producers. :meth:`Runner.stop` ends the loop
after the current poll; cancellation ends it at once; either way the steps in flight get
``drain_timeout_s`` to finish. With ``restart`` set, an error of the loop (broker gone, ...)
closes the clients and starts again after a backoff that doubles up to its maximum (reset by
a successful poll); without it the error propagates. A strategy error that ``failed`` does not
turn into outputs ends the run the same way. So does a
:class:`~streams.errors.ClientFailed` of a batch (a producer that will never send again): the
batch is neither dead-lettered nor committed, and the next run reads it again with new clients.
With ``stall_timeout_s`` set, a batch whose completion (its outputs acknowledged) or offset
commit takes longer is a ``ClientFailed`` as well: a client that waits forever (seen once, never
explained: a worker that never resumed after a broker restart) is replaced instead. The
clients' own ``stop`` gets ``close_timeout_s`` each, so a restart cannot hang on a dead client.
Before a restart the strategy hears that the old consumer's partitions are revoked: the group
may give them to another consumer meanwhile. What no restart can heal is never restarted
(:data:`NOT_RESTARTED`: a :class:`~streams.errors.ConfigurationError`, a refused login or a
missing ACL): the process must stop and say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

from aiokafka import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from streams.errors import ClientFailed, ConfigurationError, TransientError
from streams.kafka.clients import AIOKafkaSink, to_raw
from streams.kafka.run_policy import (
    NOT_RESTARTED,
    Backoff,
    RunnerConfig,
    abandon_after,
    finished_within,
)
from streams.kafka.strategy import Batch, Consumer, Producer, Strategy
from streams.kafka.transactions import Transactions
from streams.observability import metrics
from streams.records import OutRecord, retry_transient

__all__ = ["NOT_RESTARTED", "Backoff", "Runner", "RunnerConfig"]
log = logging.getLogger(__name__)
R = TypeVar("R")
T = TypeVar("T")
class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: Runner[Any]) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._runner.revoke(frozenset(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self._runner.strategy.on_assigned(frozenset(assigned))


class Runner(Generic[R]):
    """Runs one :class:`~streams.kafka.strategy.Strategy` on one consumer (module docstring).

    ``make_producer(transactional_id)`` builds a producer: with ``None`` the runner's output
    producer (``commit="offsets"``/``"none"``; not built when the factory is None), else the
    transactional producer of one partition (``transactional_id(partition)``).
    """

    def __init__(self, config: RunnerConfig, strategy: Strategy[R],
                 make_consumer: Callable[[], Consumer],
                 make_producer: Callable[[str | None], Producer] | None = None,
                 transactional_id: Callable[[TopicPartition], str] | None = None,
                 sleep: Callable[[float], Any] = asyncio.sleep) -> None:
        if config.commit == "transaction" and (make_producer is None
                                               or transactional_id is None):
            raise ValueError("transactions need make_producer and transactional_id")
        self.config = config
        self.strategy = strategy
        self._make_consumer = make_consumer
        self._make_producer = make_producer
        self._transactional_id = transactional_id
        self._sleep = sleep
        self._consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.sink: AIOKafkaSink | None = None
        self._txn = (Transactions(make_producer, transactional_id, config.group_id or "",
                                  config.name, config.retry_backoff_s, sleep)
                     if config.commit == "transaction" and make_producer is not None
                     and transactional_id is not None else None)
        self._inflight: deque[asyncio.Task[None]] = deque()
        self._lock = asyncio.Lock()
        self._stopping = False
        self._fatal: BaseException | None = None
        self._numbered = 0
        self._paused: set[TopicPartition] = set()
        self._dropped: frozenset[TopicPartition] = frozenset()  # owned when the last run ended
        self.polls = self.committed = self.failed = self.restarts = 0

    # -- what strategies and services may use ---------------------------------------------
    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            raise RuntimeError(f"{self.config.name}: the runner is not running")
        return self._consumer

    @property
    def aborted(self) -> int:
        """Transactions aborted (their batches were read again)."""
        return 0 if self._txn is None else self._txn.aborted

    def assignment(self) -> set[TopicPartition]:
        return set() if self._consumer is None else set(self._consumer.assignment())

    def stop(self) -> None:
        """End the loop after the current poll (the steps in flight finish and commit)."""
        self._stopping = True

    def pause(self, partitions: Sequence[TopicPartition]) -> None:
        """Stop fetching ``partitions`` until :meth:`resume` (kept across restarts)."""
        self._paused.update(partitions)
        if self._consumer is not None:
            self._consumer.pause(*partitions)

    def resume(self, partitions: Sequence[TopicPartition]) -> None:
        self._paused.difference_update(partitions)
        if self._consumer is not None:
            self._consumer.resume(*partitions)

    # -- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Consume until :meth:`stop` or cancellation (restarting on errors when configured)."""
        restart = self.config.restart
        delay = restart.initial_s if restart else 0.0
        while not self._stopping:
            polls = self.polls
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if restart is None or isinstance(exc, NOT_RESTARTED):
                    raise
                if self.polls > polls:
                    delay = restart.initial_s
                self.restarts += 1
                metrics.restarted(self.config.name)
                log.warning("%s: consumer failed, restarting in %.1f s: %r", self.config.name,
                            delay, exc)
                if self._dropped:  # the group may hand them to another consumer meanwhile
                    await self.strategy.on_revoked(self._dropped)
                self.strategy.on_restart(exc, delay)
                await self._sleep(delay)
                delay = min(delay * 2, restart.max_s)
            else:
                return

    async def _run_once(self) -> None:
        cfg = self.config
        self._fatal = None
        consumer = self._consumer = self._make_consumer()
        if cfg.commit != "transaction" and self._make_producer is not None:
            self.producer = self._make_producer(None)
            self.sink = AIOKafkaSink(self.producer)
        try:
            if self.producer is not None:
                await self.producer.start()
            if cfg.topics:
                consumer.subscribe(list(cfg.topics), listener=_Listener(self))
            await consumer.start()
            await self.strategy.on_start(self)
            if self._paused:
                consumer.pause(*self._paused)
            while not self._stopping:
                while len(self._inflight) >= cfg.pipeline_depth:
                    await self._wait_for(self._inflight[0])
                self._raise_fatal()
                fetched = await consumer.getmany(timeout_ms=int(cfg.poll_timeout_s * 1000),
                                                 max_records=cfg.batch_size)
                self.polls += 1
                metrics.poll_done(cfg.name, consumer, fetched)
                async with self._lock:  # a revocation in progress finishes first
                    self._raise_fatal()
                    batches = self._batches(fetched, consumer.assignment())
                    if batches:
                        self._submit(batches)
        finally:
            await self._shutdown(consumer)

    def _batches(self, fetched: dict[TopicPartition, list[Any]],
                 owned: set[TopicPartition]) -> list[Batch]:
        parts = [(tp, msgs) for tp, msgs in fetched.items() if msgs and tp in owned]
        groups = [[p] for p in parts] if self.config.per_partition else [parts] if parts else []
        if not groups and self.config.empty_batches:
            groups = [[]]
        batches = []
        for group in groups:
            records = [to_raw(m) for _, msgs in group for m in msgs]
            offsets = {tp: msgs[-1].offset + 1 for tp, msgs in group}
            batches.append(Batch(records, offsets, self._numbered))
            self._numbered += 1
        return batches

    def _submit(self, batches: list[Batch]) -> None:
        previous = self._inflight[-1] if self._inflight else None
        task = asyncio.create_task(self._step(batches, previous))
        self._inflight.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._inflight.remove(task)
        if not task.cancelled() and task.exception() is not None and self._fatal is None:
            self._fatal = task.exception()

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal

    async def drain(self) -> None:
        """Wait until every step in flight has completed and committed."""
        while self._inflight:
            await self._wait_for(self._inflight[-1])

    async def _wait_for(self, task: asyncio.Task[None]) -> None:
        """Wait for a step without cancelling it; forget it once done.

        A task can be done while its done-callback (``_forget``) is still queued: awaiting a
        done task does not yield, so a loop waiting on it would spin forever and the queued
        callback would never run (a worker was once found at 100% CPU in exactly this loop).
        """
        if task.done():
            self._forget(task)
            return
        with contextlib.suppress(Exception):  # its error is kept as fatal by _forget
            await asyncio.shield(task)

    async def revoke(self, partitions: frozenset[TopicPartition]) -> None:
        """Before ``partitions`` move to another consumer: finish and commit what is in flight."""
        async with self._lock:
            await self.drain()
            await self.strategy.on_revoked(partitions)
            if self._txn is not None:
                await self._txn.drop(partitions)

    async def _shutdown(self, consumer: Consumer) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.drain(), timeout=self.config.drain_timeout_s)
        self._dropped = frozenset(consumer.assignment())
        for task in list(self._inflight):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.strategy.on_stop()
        if self._txn is not None:
            await self._txn.drop()
        # a client that hangs (its broker frozen) must not hang the restart
        await abandon_after(consumer.stop(), self.config.close_timeout_s)
        if self.producer is not None:
            await abandon_after(self.producer.stop(), self.config.close_timeout_s)
        self._consumer, self.producer, self.sink = None, None, None

    # -- one step: process, then complete and deliver in order -------------------------------
    async def _step(self, batches: list[Batch], previous: asyncio.Task[None] | None) -> None:
        began = time.perf_counter()
        results = await asyncio.gather(*(self._process(b) for b in batches))
        if previous is not None:
            await asyncio.shield(previous)  # complete and commit in poll order
        await asyncio.gather(*(self._finish(b, ok, result)
                               for b, (ok, result) in zip(batches, results, strict=True)))
        metrics.committed(self.config.name, time.perf_counter() - began)

    async def _process(self, batch: Batch) -> tuple[bool, Any]:
        def on_retry(attempt: int, exc: TransientError) -> None:
            log.warning("%s: dependency unavailable (attempt %d), retrying: %s",
                        self.config.name, attempt, exc)

        try:
            return True, await retry_transient(lambda: self.strategy.process(batch),
                                               on_retry=on_retry, sleep=self._sleep)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return False, exc

    async def _finish(self, batch: Batch, ok: bool, result: Any) -> None:
        outputs: Sequence[OutRecord] = ()
        if ok:
            try:
                outputs = await self._within_stall(self.strategy.complete(batch, result),
                                                   batch, "completing")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                ok, result = False, exc
        if not ok and isinstance(result, ConfigurationError):
            # a process that may not do its work (a Redis ACL refusing a command, bad
            # credentials) must stop, not dead-letter good records: nothing is committed
            log.error("%s: cannot process (%s); stopping without committing",
                      self.config.name, result)
            raise result
        if not ok and isinstance(result, ClientFailed):
            # the records are good, the client is not: end the run uncommitted (a restart
            # reads the batch again with new clients)
            log.error("%s: %s; ending the run without committing", self.config.name, result)
            raise result
        if not ok:
            self.failed += 1
            metrics.batch_failed(self.config.name)
            if self.strategy.dead_letter_topic is not None:
                log.error("%s: batch of %d records failed (%r); dead-lettering it",
                          self.config.name, len(batch.records), result, exc_info=result)
            outputs = await self.strategy.failed(batch, result)  # may raise: the run ends
        if self.config.commit == "transaction":
            assert self._txn is not None
            if not await self._txn.transact(batch, outputs, self._seek_back):
                return
            metrics.produced(outputs)
        else:
            if outputs:
                await self._within_stall(self._publish(outputs), batch, "publishing")
            if self.config.commit == "offsets" and batch.offsets:
                await self._within_stall(self._commit(batch), batch, "committing")
        self.committed += 1
        await self.strategy.committed(batch)

    async def _within_stall(self, step: Coroutine[Any, Any, T], batch: Batch, doing: str) -> T:
        """``step``, or :class:`ClientFailed` once it took ``stall_timeout_s`` (the stalled
        step is cancelled and left behind)."""
        limit = self.config.stall_timeout_s
        if limit is None:
            return await step
        task = asyncio.ensure_future(step)
        if await finished_within(task, limit):
            return task.result()
        raise ClientFailed(f"{doing} batch {batch.number} took over {limit:g} s: the clients "
                           "are replaced")

    async def _publish(self, outputs: Sequence[OutRecord]) -> None:
        sink = self.sink
        if sink is None:
            raise RuntimeError(f"{self.config.name}: outputs but no producer")

        def on_retry(attempt: int, exc: TransientError) -> None:
            log.warning("%s: publish failed (attempt %d), retrying: %s", self.config.name,
                        attempt, exc)

        await retry_transient(lambda: sink.publish(outputs), on_retry=on_retry,
                              sleep=self._sleep)

    def _seek_back(self, tp: TopicPartition, offset: int) -> None:
        if tp in self.assignment():
            self.consumer.seek(tp, offset)

    async def _commit(self, batch: Batch) -> None:
        try:
            await self.consumer.commit(dict(batch.offsets))
        except KafkaError as exc:  # CommitFailedError included
            # the partitions moved on; the next owner re-reads them (effects are idempotent)
            log.warning("%s: offset commit failed, the batch will be re-read: %s",
                        self.config.name, exc)
