"""Kafka into the dashboard: the board's three topics, and live pushes to the browsers.

One aiokafka consumer *without* a consumer group reads every partition of ``churn-alerts``,
``churn-alert-outcomes`` and ``churn-scores`` (``isolation_level=read_committed``): each
dashboard process holds the whole read model, so several can run behind a load balancer. At
start it seeks to ``dashboard.lookback_s`` ago (``scores_lookback_s`` for scores, a much busier
topic) and reports *caught up* once it reached the end offsets it saw at start.

It runs on the consumer runner (:mod:`streams.kafka.runner`): no commits, every poll applied,
restarted with backoff (0.5 s doubling to 30 s) when the broker goes away.

A record that cannot be read is counted and skipped, not dead-lettered: every dashboard reads
every record, so dead letters from here would be repeated by each instance (the dispatcher's
consumer group dead-letters malformed alerts once).

:class:`Hub` fans events out to Server-Sent-Event clients; a client that falls 200 events
behind is disconnected (its browser reconnects and reloads the list) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka.structs import TopicPartition

from streams.delivery.dashboard.board import Board
from streams.kafka.clients import new_consumer
from streams.kafka.runner import Backoff, Runner, RunnerConfig
from streams.kafka.strategy import Batch, Consumer, Strategy
from streams.settings import Settings

log = logging.getLogger(__name__)


class Hub:
    """Live events to every connected browser (one bounded queue per client)."""

    def __init__(self, max_backlog: int = 200) -> None:
        self._clients: set[asyncio.Queue[tuple[str, bytes] | None]] = set()
        self._max = max_backlog

    def subscribe(self) -> asyncio.Queue[tuple[str, bytes] | None]:
        queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(self._max + 1)
        self._clients.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[str, bytes] | None]) -> None:
        self._clients.discard(queue)

    def publish(self, event: str, data: Any) -> None:
        payload = orjson.dumps(data)
        for queue in list(self._clients):
            if queue.qsize() >= self._max:  # too slow: drop it, the browser reconnects
                self._clients.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait((event, payload))

    def close_all(self) -> None:
        """End every client's stream (shutdown)."""
        for queue in list(self._clients):
            self._clients.discard(queue)
            queue.put_nowait(None)

    def __len__(self) -> int:
        return len(self._clients)


class BoardFeed:
    """Reads the topics into a :class:`Board` and pushes alerts and outcomes to a :class:`Hub`."""

    def __init__(self, settings: Settings, board: Board, hub: Hub,
                 partitions_for: Callable[[str], Awaitable[set[int]]]) -> None:
        self._settings = settings
        self._partitions_for = partitions_for  # e.g. AIOKafkaProducer.partitions_for
        self.board = board
        self.hub = hub
        self.counts: Counter[str] = Counter()
        self.caught_up = asyncio.Event()
        self._targets: dict[TopicPartition, int] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=50)  # newest alerts first

    async def run_forever(self) -> None:
        """Read the topics until cancelled, restarted with backoff when the feed fails (the
        broker went away, ...).

        A restart reads the lookback again; the board drops what it already has (alerts and
        outcomes by id, repeated score points when drawn) and pushes only what is new.
        """
        config = RunnerConfig(name="dashboard feed", batch_size=2000, poll_timeout_s=0.2,
                              commit="none", empty_batches=True, restart=Backoff(0.5, 30.0))

        def consumer() -> Any:
            return new_consumer(self._settings.kafka, group_id=None, enable_auto_commit=False,
                                client_id="churnpulse-dashboard",
                                isolation_level="read_committed", max_poll_records=2000)

        await Runner(config, _FeedStrategy(self), consumer).run()

    async def _assign(self, consumer: Consumer, names: list[str]) -> None:
        cfg = self._settings.dashboard
        parts: list[TopicPartition] = []
        for name in names:
            found = await asyncio.wait_for(self._partitions_for(name), timeout=30)
            parts += [TopicPartition(name, p) for p in sorted(found)]
        consumer.assign(parts)
        now_ms = int(time.time() * 1000)
        starts = {}
        for tp in parts:
            back = cfg.scores_lookback_s if tp.topic == self._settings.topics.scores \
                else cfg.lookback_s
            starts[tp] = now_ms - int(back * 1000)
        found_offsets = await consumer.offsets_for_times(starts)
        ends = await consumer.end_offsets(parts)
        for tp in parts:
            at = found_offsets.get(tp)
            consumer.seek(tp, at.offset if at is not None else ends[tp])
        self._targets = {tp: end for tp, end in ends.items() if end > 0}
        log.info("dashboard reading %s from %.0f s back (scores %.0f s)", ", ".join(names),
                 cfg.lookback_s, cfg.scores_lookback_s)

    async def _check_caught_up(self, consumer: Consumer) -> None:
        for tp, end in list(self._targets.items()):
            if await consumer.position(tp) >= end:
                del self._targets[tp]
        if not self._targets:
            self.caught_up.set()
            log.info("dashboard caught up: %d customers on the board", len(self.board))

    def _apply(self, topic: str, value: bytes | None) -> None:
        topics = self._settings.topics
        try:
            record = orjson.loads(value or b"")
            if not isinstance(record, dict):
                raise ValueError("not an object")
            if topic == topics.scores:
                self.counts["scores"] += 1
                entry = self.board.on_score(record)
                if entry is not None and self.caught_up.is_set():
                    self.hub.publish("score", {"customer_id": entry.customer_id,
                                               "score": entry.score, "ts": entry.score_ts})
            elif topic == topics.alerts:
                self.counts["alerts"] += 1
                entry = self.board.on_alert(record)
                if entry is not None and not entry.holdout:  # nobody is to act on those
                    summary = entry.summary()
                    self.recent.appendleft(summary)
                    self.hub.publish("alert", summary)
            else:
                self.counts["outcomes"] += 1
                entry = self.board.on_outcome(record)
                if entry is not None:
                    self.hub.publish("outcome", {"outcome": record, "entry": entry.summary()})
        except (ValueError, KeyError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
            self.counts["unreadable"] += 1
            log.warning("skipped an unreadable record on %s: %s", topic, exc)


class _FeedStrategy(Strategy[None]):
    """The feed on the consumer runner: assign and seek at start, apply every poll."""

    def __init__(self, feed: BoardFeed) -> None:
        self._feed = feed
        self._consumer: Consumer | None = None

    async def on_start(self, runner: Runner[None]) -> None:
        topics = self._feed._settings.topics
        self._consumer = runner.consumer
        await self._feed._assign(runner.consumer,
                                 [topics.alerts, topics.alert_outcomes, topics.scores])

    async def process(self, batch: Batch) -> None:
        feed = self._feed
        for record in batch.records:
            feed._apply(record.topic, record.value)
        if not feed.caught_up.is_set() and self._consumer is not None:
            await feed._check_caught_up(self._consumer)

    def on_restart(self, error: Exception, delay_s: float) -> None:
        self._feed.counts["restarts"] += 1
