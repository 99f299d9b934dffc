"""The consumer runner's logic on an in-memory broker (ordering, commits, transactions,
rebalance, restart, stop, pause)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import TopicPartition

from streams.errors import TransientError
from streams.kafka.runner import Backoff, Runner, RunnerConfig
from streams.kafka.strategy import Batch, Strategy
from streams.records import OutRecord

T = "events"


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0


class FakeBroker:
    """Topics as lists of records, committed offsets, and what producers published."""

    def __init__(self, partitions: int = 2) -> None:
        self.logs: dict[TopicPartition, list[Msg]] = {
            TopicPartition(T, p): [] for p in range(partitions)}
        self.committed: dict[TopicPartition, int] = {}
        self.published: list[OutRecord] = []
        self.commits: list[dict[TopicPartition, int]] = []
        self.events: list[str] = []

    def append(self, partition: int, n: int) -> None:
        log = self.logs[TopicPartition(T, partition)]
        for _ in range(n):
            log.append(Msg(T, partition, len(log), b"k", f"{partition}:{len(log)}".encode()))


class FakeConsumer:
    def __init__(self, broker: FakeBroker, fail_polls: int = 0) -> None:
        self.broker = broker
        self.position_of: dict[TopicPartition, int] = {}
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self.listener: Any = None
        self.fail_polls = fail_polls
        self.stopped = False

    async def start(self) -> None:
        if self.listener is not None:
            await self.rebalance(set(self.broker.logs))

    async def stop(self) -> None:
        self.stopped = True

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.listener = listener

    async def rebalance(self, assigned: set[TopicPartition]) -> None:
        gone = self._assigned - assigned
        if gone:
            await self.listener.on_partitions_revoked(gone)
        self._assigned = set(assigned)
        for tp in assigned:
            self.position_of[tp] = self.broker.committed.get(tp, 0)
        await self.listener.on_partitions_assigned(assigned)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self._assigned = set(partitions)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0)
        if self.fail_polls:
            self.fail_polls -= 1
            raise KafkaConnectionError("broker gone")
        out: dict[TopicPartition, list[Any]] = {}
        budget = max_records or 1000
        for tp in sorted(self._assigned - self._paused):
            pos = self.position_of.get(tp, 0)
            msgs = self.broker.logs[tp][pos:pos + budget]
            if msgs:
                out[tp] = msgs
                budget -= len(msgs)
                self.position_of[tp] = pos + len(msgs)
        return out

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.broker.committed.update(offsets)
        self.broker.commits.append(dict(offsets))
        self.broker.events.append(f"commit {sorted(offsets.values())}")

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.position_of[partition] = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self.position_of[tp] = 0

    async def position(self, partition: TopicPartition) -> int:
        return self.position_of.get(partition, 0)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.broker.logs[tp]) for tp in partitions}

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)


class FakeProducer:
    def __init__(self, broker: FakeBroker, transactional_id: str | None,
                 fail_commits: int = 0) -> None:
        self.broker = broker
        self.transactional_id = transactional_id
        self.fail_commits = fail_commits
        self.pending: list[OutRecord] = []
        self.offsets: dict[TopicPartition, int] = {}
        self.aborts = 0
        self.stopped = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: Any = None) -> Awaitable[Any]:
        record = OutRecord(topic, key, value or b"", headers)
        if self.transactional_id is None:
            self.broker.published.append(record)
            self.broker.events.append(f"publish {value!r}")
        else:
            self.pending.append(record)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def begin_transaction(self) -> None:
        self.pending, self.offsets = [], {}

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int],
                                          group_id: str) -> None:
        self.offsets.update(offsets)

    async def commit_transaction(self) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise KafkaError("transaction coordinator gone")
        self.broker.published.extend(self.pending)
        self.broker.committed.update(self.offsets)
        self.broker.commits.append(dict(self.offsets))

    async def abort_transaction(self) -> None:
        self.aborts += 1
        self.pending, self.offsets = [], {}


class Recording(Strategy[list[str]]):
    """Echoes each record to an output topic; hooks to block, fail or stop."""

    def __init__(self, broker: FakeBroker, stop_after: int | None = None) -> None:
        self.broker = broker
        self.stop_after = stop_after
        self.processed: list[list[str]] = []
        self.runner: Runner[list[str]] | None = None
        self.gate: asyncio.Event | None = None
        self.fail: Callable[[Batch], Exception | None] = lambda b: None
        self.revoked: list[frozenset[TopicPartition]] = []

    async def on_start(self, runner: Runner[list[str]]) -> None:
        self.runner = runner

    async def process(self, batch: Batch) -> list[str]:
        if self.gate is not None:
            await self.gate.wait()
        error = self.fail(batch)
        if error is not None:
            raise error
        values = [(r.value or b"").decode() for r in batch.records]
        self.broker.events.append(f"process {batch.number}")
        return values

    async def complete(self, batch: Batch, result: list[str]) -> Sequence[OutRecord]:
        self.processed.append(result)
        return [OutRecord("out", None, v.encode()) for v in result]

    async def committed(self, batch: Batch) -> None:
        done = sum(len(p) for p in self.processed)
        if self.stop_after is not None and done >= self.stop_after and self.runner is not None:
            self.runner.stop()

    async def on_revoked(self, partitions: frozenset[TopicPartition]) -> None:
        self.revoked.append(partitions)
        self.broker.events.append("revoked")


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


def make_runner(broker: FakeBroker, strategy: Strategy[Any], sleeps: Sleeps | None = None,
                consumers: list[FakeConsumer] | None = None, **config: Any,
                ) -> tuple[Runner[Any], list[FakeConsumer], list[FakeProducer]]:
    made: list[FakeConsumer] = []
    producers: list[FakeProducer] = []
    queue = list(consumers or [])

    def consumer() -> FakeConsumer:
        c = queue.pop(0) if queue else FakeConsumer(broker)
        made.append(c)
        return c

    def producer(txn_id: str | None) -> FakeProducer:
        p = FakeProducer(broker, txn_id, fail_commits=config.pop("_fail", 0) if txn_id else 0)
        producers.append(p)
        return p

    fail = config.pop("fail_commits", 0)
    if fail:
        config["_fail"] = fail
    txn = config.get("commit") == "transaction"
    cfg = RunnerConfig(name="test", topics=(T,), batch_size=3, poll_timeout_s=0.01,
                       **{k: v for k, v in config.items() if k != "_fail"})
    runner = Runner(cfg, strategy, consumer, producer,
                    transactional_id=(lambda tp: f"txn.{tp.partition}") if txn else None,
                    sleep=sleeps or Sleeps())
    return runner, made, producers


async def until(done: Callable[[], bool], timeout_s: float = 5) -> None:
    """Poll ``done`` with a deadline."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not done():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.001)


async def run_until(runner: Runner[Any], done: Callable[[], bool], timeout_s: float = 5) -> None:
    task = asyncio.create_task(runner.run())
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not done():
        if task.done():
            await task
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.001)
    runner.stop()
    await asyncio.wait_for(task, timeout_s)


@pytest.mark.parametrize("depth", [1, 2])
async def test_batches_complete_and_commit_in_poll_order_after_processing(depth: int) -> None:
    broker = FakeBroker(partitions=1)
    broker.append(0, 10)
    strategy = Recording(broker)
    delays = iter([0.02, 0.0, 0.01, 0.0])

    async def slow_process(batch: Batch) -> list[str]:  # the first batch finishes last
        await asyncio.sleep(next(delays, 0.0))
        return await Recording.process(strategy, batch)

    strategy.process = slow_process  # type: ignore[method-assign]
    runner, _, _ = make_runner(broker, strategy, pipeline_depth=depth)
    await run_until(runner, lambda: broker.committed.get(TopicPartition(T, 0)) == 10)
    assert [v for p in strategy.processed for v in p] == [f"0:{i}" for i in range(10)]
    assert [c[TopicPartition(T, 0)] for c in broker.commits] == [3, 6, 9, 10]
    # outputs of a batch are acknowledged before its commit, commits never overtake
    events = [e for e in broker.events if not e.startswith("process")]
    assert events[:4] == ["publish b'0:0'", "publish b'0:1'", "publish b'0:2'", "commit [3]"]
    assert [v.value for v in broker.published] == [f"0:{i}".encode() for i in range(10)]


async def test_a_transient_error_is_retried_and_nothing_is_committed_before_success() -> None:
    broker = FakeBroker(partitions=1)
    broker.append(0, 2)
    strategy = Recording(broker)
    failures = [TransientError("redis down"), TransientError("redis down")]
    strategy.fail = lambda b: failures.pop(0) if failures else None
    sleeps = Sleeps()
    runner, _, _ = make_runner(broker, strategy, sleeps)

    async def no_commit_before_success() -> None:
        while failures:
            assert not broker.commits
            await asyncio.sleep(0)

    watcher = asyncio.create_task(no_commit_before_success())
    await run_until(runner, lambda: bool(broker.commits))
    await watcher
    assert sleeps.calls[:2] == [0.1, 0.2]  # backoff doubles
    assert strategy.processed == [["0:0", "0:1"]]


async def test_a_failing_batch_is_dead_lettered_whole_then_committed_and_the_next_runs() -> None:
    broker = FakeBroker(partitions=1)
    broker.append(0, 5)
    strategy = Recording(broker)
    strategy.dead_letter_topic = "dlq"
    strategy.fail = lambda b: ZeroDivisionError("a bug") if b.number == 0 else None
    runner, _, _ = make_runner(broker, strategy)
    await run_until(runner, lambda: broker.committed.get(TopicPartition(T, 0)) == 5)
    dead = [r for r in broker.published if r.topic == "dlq"]
    assert [r.value for r in dead] == [b"0:0", b"0:1", b"0:2"]
    headers = dict(dead[0].headers or [])
    assert headers["churn.dlq.code"] == b"processing_failed"
    assert b"ZeroDivisionError: a bug" in headers["churn.dlq.reason"]
    assert strategy.processed == [["0:3", "0:4"]]
    assert runner.failed == 1


async def test_a_bug_without_dead_letter_topic_ends_the_run() -> None:
    broker = FakeBroker(partitions=1)
    broker.append(0, 1)
    strategy = Recording(broker)
    strategy.fail = lambda b: RuntimeError("lost the lock")
    runner, consumers, _ = make_runner(broker, strategy)
    with pytest.raises(RuntimeError, match="lost the lock"):
        await asyncio.wait_for(runner.run(), 5)
    assert not broker.commits and consumers[0].stopped


async def test_a_failed_transaction_is_aborted_and_the_batch_read_again() -> None:
    broker = FakeBroker(partitions=2)
    broker.append(0, 2)
    broker.append(1, 2)
    strategy = Recording(broker)
    sleeps = Sleeps()
    runner, _, producers = make_runner(broker, strategy, sleeps, commit="transaction",
                                       per_partition=True, group_id="g", fail_commits=1)
    await run_until(runner, lambda: broker.committed == {TopicPartition(T, 0): 2,
                                                          TopicPartition(T, 1): 2})
    assert runner.aborted == 1
    aborted = producers[0]
    assert aborted.aborts == 0 and aborted.stopped  # commit failed: dropped, a new one made
    assert {p.transactional_id for p in producers} == {"txn.0", "txn.1"}
    assert sleeps.calls == [0.5]
    # each record published once: the aborted transaction's records never became visible
    assert sorted(r.value for r in broker.published) == [b"0:0", b"0:1", b"1:0", b"1:1"]
    assert sorted(v for p in strategy.processed for v in p).count("0:0") == 2  # re-read


async def test_an_error_inside_a_transaction_aborts_it() -> None:
    broker = FakeBroker(partitions=1)
    broker.append(0, 1)
    strategy = Recording(broker)
    runner, _, producers = make_runner(broker, strategy, commit="transaction",
                                       per_partition=True, group_id="g")
    calls = 0

    async def flaky_offsets(offsets: dict[TopicPartition, int], group_id: str) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KafkaError("coordinator moved")
        producers[-1].offsets.update(offsets)

    original = FakeProducer.send_offsets_to_transaction
    FakeProducer.send_offsets_to_transaction = (  # type: ignore[method-assign]
        lambda self, offsets, group_id: flaky_offsets(offsets, group_id))
    try:
        await run_until(runner, lambda: broker.committed.get(TopicPartition(T, 0)) == 1)
    finally:
        FakeProducer.send_offsets_to_transaction = original  # type: ignore[method-assign]
    assert producers[0].aborts == 1
    assert [r.value for r in broker.published] == [b"0:0"]


async def test_revocation_waits_for_the_batch_in_flight_to_commit() -> None:
    broker = FakeBroker(partitions=2)
    broker.append(0, 2)
    strategy = Recording(broker)
    strategy.gate = asyncio.Event()
    runner, consumers, _ = make_runner(broker, strategy)
    task = asyncio.create_task(runner.run())
    await until(lambda: runner.polls > 0)
    revoking = asyncio.create_task(consumers[0].rebalance({TopicPartition(T, 1)}))
    await asyncio.sleep(0.01)
    assert not revoking.done() and not strategy.revoked  # waits for the batch in flight
    strategy.gate.set()
    await asyncio.wait_for(revoking, 5)
    assert broker.events.index("commit [2]") < broker.events.index("revoked")
    assert strategy.revoked == [frozenset({TopicPartition(T, 0)})]
    broker.append(0, 1)  # no longer ours: never processed
    broker.append(1, 1)
    await until(lambda: broker.committed.get(TopicPartition(T, 1)) == 1)
    runner.stop()
    await asyncio.wait_for(task, 5)
    assert [v for p in strategy.processed for v in p] == ["0:0", "0:1", "1:0"]


async def test_records_of_a_partition_revoked_after_the_poll_are_dropped() -> None:
    broker = FakeBroker(partitions=1)
    strategy = Recording(broker)
    runner, _, _ = make_runner(broker, strategy)
    fetched = {TopicPartition(T, 0): [Msg(T, 0, 0, None, b"x")]}
    assert runner._batches(fetched, set()) == []
    assert len(runner._batches(fetched, {TopicPartition(T, 0)})) == 1


async def test_the_loop_restarts_with_backoff_after_a_broker_error() -> None:
    broker = FakeBroker(partitions=1)
    broker.append(0, 2)
    strategy = Recording(broker)
    sleeps = Sleeps()
    broken = [FakeConsumer(broker, fail_polls=1), FakeConsumer(broker, fail_polls=1)]
    runner, made, _ = make_runner(broker, strategy, sleeps, consumers=broken,
                                  restart=Backoff(0.5, 0.8))
    await run_until(runner, lambda: bool(broker.commits))
    assert runner.restarts == 2
    assert sleeps.calls == [0.5, 0.8]  # doubled, capped
    assert len(made) == 3 and made[0].stopped and made[1].stopped
    assert strategy.processed == [["0:0", "0:1"]]


async def test_without_restart_the_broker_error_propagates() -> None:
    broker = FakeBroker(partitions=1)
    runner, _, _ = make_runner(broker, Recording(broker),
                               consumers=[FakeConsumer(broker, fail_polls=1)])
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(runner.run(), 5)


async def test_stop_lets_the_batch_in_flight_finish_and_commit() -> None:
    broker = FakeBroker(partitions=1)
    broker.append(0, 2)
    strategy = Recording(broker)
    strategy.gate = asyncio.Event()
    runner, consumers, producers = make_runner(broker, strategy)
    task = asyncio.create_task(runner.run())
    await until(lambda: runner.polls > 0)
    runner.stop()
    await asyncio.sleep(0.01)
    assert not task.done()  # draining
    strategy.gate.set()
    await asyncio.wait_for(task, 5)
    assert broker.committed == {TopicPartition(T, 0): 2}
    assert consumers[0].stopped and producers[0].stopped


async def test_cancelling_drains_too() -> None:
    broker = FakeBroker(partitions=1)
    broker.append(0, 1)
    strategy = Recording(broker)
    strategy.gate = asyncio.Event()
    runner, consumers, _ = make_runner(broker, strategy)
    task = asyncio.create_task(runner.run())
    await until(lambda: runner.polls > 0)
    task.cancel()
    await asyncio.sleep(0.01)
    strategy.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert broker.committed == {TopicPartition(T, 0): 1} and consumers[0].stopped


async def test_a_paused_partition_is_not_fetched_until_resumed() -> None:
    broker = FakeBroker(partitions=2)
    broker.append(0, 1)
    broker.append(1, 1)
    strategy = Recording(broker)
    runner, _, _ = make_runner(broker, strategy)
    runner.pause([TopicPartition(T, 1)])
    task = asyncio.create_task(runner.run())
    await until(lambda: broker.committed.get(TopicPartition(T, 0)) == 1)
    for _ in range(20):
        await asyncio.sleep(0)
    assert TopicPartition(T, 1) not in broker.committed
    runner.resume([TopicPartition(T, 1)])
    await until(lambda: broker.committed.get(TopicPartition(T, 1)) == 1)
    runner.stop()
    await asyncio.wait_for(task, 5)
    assert [v for p in strategy.processed for v in p] == ["0:0", "1:0"]


async def test_empty_polls_reach_the_strategy_when_asked() -> None:
    broker = FakeBroker(partitions=1)
    strategy = Recording(broker)
    runner, _, _ = make_runner(broker, strategy, empty_batches=True, commit="none")
    await run_until(runner, lambda: len(strategy.processed) >= 3)
    assert strategy.processed[:3] == [[], [], []]
    assert not broker.commits


def test_drain_returns_when_a_finished_step_was_not_forgotten_yet() -> None:
    done = threading.Event()

    async def scenario() -> None:
        broker = FakeBroker(partitions=1)
        runner, _, _ = make_runner(broker, Recording(broker))

        async def step() -> None:
            return None

        finished = asyncio.create_task(step())
        await finished  # done; its _forget callback never attached (as if still queued)
        runner._inflight.append(finished)
        await runner.drain()
        assert not runner._inflight
        done.set()

    # in a thread: a drain that awaits a done task spins forever without yielding
    thread = threading.Thread(target=lambda: asyncio.run(scenario()), daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert done.is_set(), "drain() spins on a finished step"


async def test_a_configuration_error_stops_the_run_without_dead_letters_or_commits() -> None:
    """An ACL that refuses a command is not a bad batch: dead-lettering would lose good records."""
    from streams.errors import ConfigurationError

    broker = FakeBroker(partitions=1)
    broker.append(0, 3)
    strategy = Recording(broker)
    strategy.dead_letter_topic = "dlq"
    strategy.fail = lambda b: ConfigurationError("redis refused this process: NOPERM")
    runner, consumers, _ = make_runner(broker, strategy)
    with pytest.raises(ConfigurationError, match="NOPERM"):
        await asyncio.wait_for(runner.run(), 5)
    assert not broker.commits and not broker.published and runner.failed == 0
    assert consumers[0].stopped


async def test_a_failed_client_restarts_the_run_and_its_batch_is_read_again_uncommitted() -> None:
    """A producer that will never send again (``ClientFailed``): the batch is not dead-lettered
    and not committed; the run restarts with new clients, the strategy hears the old consumer's
    partitions revoked, and the batch is read again and committed once."""
    from streams.errors import ClientFailed

    broker = FakeBroker(partitions=1)
    broker.append(0, 2)
    strategy = Recording(broker)
    strategy.dead_letter_topic = "dlq"
    failures = [ClientFailed("the producer cannot send any more: OutOfOrderSequenceNumber")]
    strategy.fail = lambda b: failures.pop() if failures else None
    sleeps = Sleeps()
    runner, consumers, producers = make_runner(broker, strategy, sleeps,
                                               restart=Backoff(0.5, 30.0))
    await run_until(runner, lambda: bool(broker.commits))
    assert runner.restarts == 1 and sleeps.calls == [0.5]
    assert runner.failed == 0  # nothing dead-lettered
    assert broker.commits == [{TopicPartition(T, 0): 2}]  # once, after the restart
    assert [r.value for r in broker.published] == [b"0:0", b"0:1"]
    assert strategy.revoked == [frozenset({TopicPartition(T, 0)})]
    assert len(consumers) == 2 and consumers[0].stopped
    assert len(producers) == 2 and producers[0].stopped


async def test_a_configuration_error_is_not_restarted() -> None:
    from streams.errors import ConfigurationError

    broker = FakeBroker(partitions=1)
    broker.append(0, 1)
    strategy = Recording(broker)
    strategy.fail = lambda b: ConfigurationError("redis refused this process: NOPERM")
    runner, consumers, _ = make_runner(broker, strategy, restart=Backoff(0.5, 30.0))
    with pytest.raises(ConfigurationError, match="NOPERM"):
        await asyncio.wait_for(runner.run(), 5)
    assert runner.restarts == 0 and not broker.commits and len(consumers) == 1


async def test_a_missing_acl_is_not_restarted_but_a_lost_broker_is() -> None:
    from aiokafka.errors import TopicAuthorizationFailedError

    class Refused(FakeConsumer):
        async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                          max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
            raise TopicAuthorizationFailedError("events")

    broker = FakeBroker(partitions=1)
    lost = FakeConsumer(broker, fail_polls=1)  # KafkaConnectionError: restarted
    runner, consumers, _ = make_runner(broker, Recording(broker), consumers=[lost,
                                       Refused(broker)], restart=Backoff(0.5, 30.0))
    with pytest.raises(TopicAuthorizationFailedError):
        await asyncio.wait_for(runner.run(), 5)
    assert runner.restarts == 1 and len(consumers) == 2


class HangingProducer(FakeProducer):
    """Accepts records and never has them acknowledged; its stop hangs too."""

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: Any = None) -> Awaitable[Any]:
        return asyncio.get_running_loop().create_future()  # never done

    async def stop(self) -> None:
        await asyncio.Event().wait()


class HangingCommits(FakeConsumer):
    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await asyncio.Event().wait()


async def test_a_batch_that_stalls_replaces_the_clients_and_is_read_again() -> None:
    """A publish that is never acknowledged, then a commit that never returns: each ends the
    run after ``stall_timeout_s`` (even the hanging producer's stop is cut short), and the
    batch is read again by new clients and committed once."""
    broker = FakeBroker(partitions=1)
    broker.append(0, 2)
    strategy = Recording(broker)
    made: list[FakeProducer] = []

    def producer(txn_id: str | None) -> FakeProducer:
        made.append(HangingProducer(broker, None) if not made else FakeProducer(broker, None))
        return made[-1]

    consumers = [FakeConsumer(broker), HangingCommits(broker), FakeConsumer(broker)]
    cfg = RunnerConfig(name="test", topics=(T,), batch_size=3, poll_timeout_s=0.01,
                       restart=Backoff(0.01, 0.01), stall_timeout_s=0.2, close_timeout_s=0.2)
    runner = Runner(cfg, strategy, lambda: consumers.pop(0), producer)
    await run_until(runner, lambda: bool(broker.commits))
    assert runner.restarts == 2 and not consumers  # the publish stalled, then the commit
    assert runner.failed == 0 and broker.commits == [{TopicPartition(T, 0): 2}]
    assert [r.value for r in broker.published] == [b"0:0", b"0:1"] * 2  # re-sent, idempotent
    assert len(made) == 3
