"""The retention process (``churnpulse retention``): outcomes from the topics, offers, rewards.

One process (a Redis lock keeps a second one from writing) reads every partition of three
topics, with ``isolation_level=read_committed`` and no consumer group:

* ``retention-actions`` (the alerter's decisions, holdout included),
* ``churn-labels``,
* the offer events (``offer_accepted`` / ``offer_declined`` customer events; by default on
  ``customer-events``, where other events are skipped before they are decoded),

and runs them through the pure :class:`alerts.retention_loop.RetentionLoop`: each action
resolves once into an outcome (churned or stayed, the accepted offer), each outcome of an
actioned customer is a reward for the learning policy, each offer answer teaches the
recommender. Exactly once, as the learner's label join:

1. records change the loop in memory only;
2. at most every ``checkpoint_s`` seconds one checkpoint (:class:`RetentionStore`) holds the
   loop, the next offset of every input partition and the *outbox* (the outcomes resolved since
   the last checkpoint), written atomically;
3. then the outbox is published to ``retention-outcomes`` (key: customer id; id
   ``<action_id>:outcome``).

The recommender (a pickle that grows with the customers who answered) is written with a
checkpoint at most every ``reco_checkpoint_s`` seconds, together with the offer events' offsets
it covers; a restart re-reads the offer events from those offsets into the recommender only
(the joiner has seen them), so each answer is learned once there too.

A crash before 2 re-reads the inputs from the last checkpoint's offsets (nothing was learned
twice, nothing published); a crash between 2 and 3 re-publishes the outbox on start, so an
outcome may appear twice on the topic with the same id and bytes, and readers keep the first
of each id (``churnpulse report uplift --outcomes`` does). The alerter reads the published
recommender and counts (:class:`~streams.redis.retention_store.AdviceWatcher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka.structs import TopicPartition

from alerts.outcomes import ActionOutcome
from alerts.retention_loop import BadAction, RetentionLoop
from streams.contracts import decode_event, decode_label, encode, offer_of
from streams.dead_letter import dead_letter_record
from streams.errors import ConfigurationError, InvalidMessage, TransientError
from streams.kafka.clients import new_consumer, new_producer, topic_partitions
from streams.kafka.runner import Runner, RunnerConfig
from streams.kafka.strategy import Batch, Strategy
from streams.records import OutRecord, RawRecord, retry_transient
from streams.redis.retention_store import RetentionStore
from streams.retention.tally import RetentionTally
from streams.settings import Settings
from streams.signing import signer_from_settings

log = logging.getLogger(__name__)
READY = "retention ready"
OFFER_MARK = b'"offer_'  # an offer event's type; other events are not decoded


def input_topics(settings: Settings) -> tuple[str, str, str]:
    """(actions, labels, offers) topics."""
    t = settings.topics
    return t.retention_actions, t.labels, settings.retention.offers_topic or t.events


class RetentionService(Strategy[list[OutRecord]]):
    """The consumer runner's strategy (see the module docstring)."""

    def __init__(self, settings: Settings, store: RetentionStore,
                 stop: asyncio.Event | None = None) -> None:
        cfg = settings.retention
        self.settings = settings
        self.store = store
        self.topics = input_topics(settings)  # (actions, labels, offers)
        self.stop = stop or asyncio.Event()
        # a bug in a step stops the process (it restarts from its checkpoint) instead of
        # dead-lettering whole batches of valid inputs (the runner's default)
        self.dead_letter_topic = None
        horizon = (cfg.horizon_days or settings.model.horizon_days) * 86400.0
        self.loop = RetentionLoop(horizon, cfg.bandit_params())
        self.offsets: dict[str, int] = {}  # next offset per "topic:partition" (the loop's)
        self.reco_offsets: dict[str, int] = {}  # offer events the stored recommender learned
        self.outbox: list[dict[str, Any]] = []
        self.version = 0
        self.token = uuid.uuid4().hex
        self.skipped: dict[str, int] = {}  # malformed labels and offer events, by reason
        self.tally = RetentionTally()  # /metrics and the demo (streams.retention.tally)
        self.retries = 0  # Redis retries (not checkpointed)
        self.locked = False
        self.last_checkpoint_at: float | None = None  # wall time
        self._limits = settings.input.limits
        self._dirty = False
        self._reco_dirty = False
        self._last_checkpoint = time.monotonic()
        self._last_reco = float("-inf")  # the first recommender is published at once
        self._runner: Runner[list[OutRecord]] | None = None

    async def start(self, wait_s: float = 30.0) -> None:
        """Take the lock and load the last checkpoint (its outbox is published first)."""
        if not await self.store.acquire(self.token, wait_s):
            raise ConfigurationError("another retention process holds the lock "
                                     f"{self.store.lock_key}")
        self.locked = True
        saved = await self.store.load()
        if saved is None:
            return
        self.version = saved.version
        self.loop = RetentionLoop.from_json(saved.state["loop"],
                                            self.settings.retention.bandit_params(),
                                            saved.recommender)
        self.offsets = {str(k): int(v) for k, v in saved.state["offsets"].items()}
        self.outbox = list(saved.state["outbox"])
        self.reco_offsets = dict(saved.reco_offsets)
        self.skipped = {str(k): int(v) for k, v in saved.state.get("skipped", {}).items()}
        self.tally = RetentionTally.from_json(saved.state.get("tally"))
        log.info("retention: resumed checkpoint %d (%d pending actions, %d outcomes in the "
                 "outbox)", self.version, len(self.loop.joiner.pending if self.loop.joiner
                                                  else {}), len(self.outbox))

    async def on_start(self, runner: Runner[list[OutRecord]]) -> None:
        self._runner = runner
        consumer: Any = runner.consumer
        tps: list[TopicPartition] = []
        for topic in dict.fromkeys(self.topics):
            tps.extend(TopicPartition(topic, p) for p in sorted(await topic_partitions(consumer,
                                                                                  topic)))
        consumer.assign(tps)
        offers = self.topics[2]
        for tp in tps:
            key = f"{tp.topic}:{tp.partition}"
            # the offer events from where the stored recommender stopped (it is checkpointed
            # less often than the rest); the others from the loop's checkpoint
            at = self.reco_offsets.get(key) if tp.topic == offers else self.offsets.get(key)
            if at is not None:
                consumer.seek(tp, at)
            else:
                await consumer.seek_to_beginning(tp)
        log.info("%s: reading %s from checkpoint %d", READY,
                 ", ".join(dict.fromkeys(self.topics)), self.version)

    async def process(self, batch: Batch) -> list[OutRecord]:
        now = time.time()
        dead: list[OutRecord] = []
        for r in batch.records:
            bad = self.apply(r, now)
            if bad is not None:
                dead.append(bad)
            key = f"{r.topic}:{r.partition}"
            self.offsets[key] = max(self.offsets.get(key, 0), r.offset + 1)
            self._dirty = True
        cfg = self.settings.retention
        due = time.monotonic() - self._last_checkpoint >= cfg.checkpoint_s
        stopping = self.stop.is_set()
        if self._dirty and (due or stopping or len(self.outbox) >= 10_000):
            # Redis away: wait for it (the step's records are applied in memory already, so
            # the batch must not be processed again)
            await retry_transient(lambda: self.checkpoint(final=stopping),
                                  on_retry=self._retrying)
        out: list[OutRecord] = []
        if not self._dirty and self.outbox:  # checkpointed: publish the outbox (step 3)
            out = [OutRecord(cfg.outcomes_topic, str(o["customer_id"]).encode(), encode(o))
                   for o in self.outbox]
            self.outbox = []
        if not await retry_transient(lambda: self.store.renew(self.token),
                                     on_retry=self._retrying):
            self.locked = False
            raise ConfigurationError("lost the retention lock")
        if stopping and self._runner is not None:
            self._runner.stop()
        return dead + out

    async def complete(self, batch: Batch, result: list[OutRecord]) -> list[OutRecord]:
        return result

    def apply(self, r: RawRecord, now: float) -> OutRecord | None:
        """One input record; a malformed action record becomes a dead letter (labels and
        events are dead-lettered by the learner and the worker: counted here)."""
        actions, labels, offers = self.topics
        if r.value is None:
            return None
        if r.topic == actions:
            try:
                rec = orjson.loads(r.value)
                if not isinstance(rec, dict):
                    raise BadAction("not_an_object", "an action must be a JSON object")
                before = self.loop.counts.actions
                self._emit(self.loop.on_action(rec))
                if self.loop.counts.actions > before:  # not a duplicate
                    self.tally.add_action(rec)
            except orjson.JSONDecodeError as exc:
                self.tally.add_error("action:bad_json")
                return dead_letter_record(self.settings.topics.dead_letter, r,
                                          InvalidMessage("bad_json", str(exc)), now)
            except BadAction as exc:
                self.tally.add_error(f"action:{exc.code}")
                return dead_letter_record(self.settings.topics.dead_letter, r, exc, now)
            return None
        if r.topic == labels:
            try:
                label = decode_label(r.value, r.key, self._limits, now)
            except InvalidMessage as exc:
                self._skip(f"label:{exc.code}")
                return None
            self._emit(self.loop.on_label(label.customer_id, label.ts, label.churned))
            return None
        if r.topic == offers and OFFER_MARK in r.value:
            try:
                event = decode_event(r.value, r.key, self._limits, now)
                got = offer_of(event)
            except InvalidMessage as exc:
                self._skip(f"offer:{exc.code}")
                return None
            if got is not None:  # seen by the joiner already: for the recommender only
                seen = r.offset < self.offsets.get(f"{r.topic}:{r.partition}", 0)
                self.loop.on_offer(event.customer_id, event.ts, got[0], got[1], join=not seen)
                self._reco_dirty = self._reco_dirty or got[1] != "presented"
        return None

    def _emit(self, outcomes: Iterable[ActionOutcome]) -> None:
        for o in outcomes:
            wire = o.to_wire()
            self.tally.add_outcome(wire)
            self.outbox.append(wire)

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.tally.add_error(reason)

    def _retrying(self, attempt: int, exc: TransientError) -> None:
        self.retries += 1
        log.warning("retention: Redis unavailable (attempt %d), retrying: %s", attempt, exc)

    async def checkpoint(self, final: bool = False) -> None:
        """State, offsets and outbox in one atomic write (module docstring, step 2)."""
        self.version += 1
        keep = self.settings.retention.keep_days
        self.loop.prune(None if keep is None else keep * 86400.0)
        state = {"loop": self.loop.to_json(), "offsets": self.offsets, "outbox": self.outbox,
                 "skipped": self.skipped, "tally": self.tally.to_json()}
        now = time.monotonic()
        reco = self._reco_dirty and (final or now - self._last_reco
                                     >= self.settings.retention.reco_checkpoint_s)
        covered = None
        if reco or not self._reco_dirty:  # the stored recommender covers every offer read
            offers = self.topics[2]
            covered = {k: v for k, v in self.offsets.items()
                       if k.rsplit(":", 1)[0] == offers}
        await self.store.save(self.version, state, self.loop.bandit.to_json(),
                              self.loop.recommender if reco else None, covered)
        if covered is not None:
            self.reco_offsets = covered
        if reco:
            self._reco_dirty = False
            self._last_reco = now
        self._dirty = False
        self._last_checkpoint = now
        self.last_checkpoint_at = time.time()

    async def on_stop(self) -> None:
        c = self.loop.counts
        log.info("retention totals: actions=%d duplicates=%d labels=%d offer_answers=%d "
                 "outcomes=%d rewards=%d skipped=%s checkpoint=%d", c.actions,
                 c.duplicate_actions, c.labels, c.offer_answers, c.outcomes, c.rewards,
                 self.skipped or "{}", self.version)




def build_service(settings: Settings, client: aioredis.Redis,
                  stop: asyncio.Event | None = None) -> RetentionService:
    """The service on ``client`` (not started: :func:`run_service` takes the lock)."""
    store = RetentionStore(client, settings.redis.key_prefix, signer_from_settings(settings))
    return RetentionService(settings, store, stop)


async def run_service(settings: Settings, client: aioredis.Redis,
                      stop: asyncio.Event | None = None,
                      service: RetentionService | None = None) -> RetentionService:
    """Run ``service`` (default: :func:`build_service`) until ``stop`` is set (then
    checkpoint and publish what is pending)."""
    service = service or build_service(settings, client, stop)
    store = service.store
    await service.start()
    config = RunnerConfig(name="retention", batch_size=settings.retention.batch_size,
                          poll_timeout_s=1.0, commit="none", empty_batches=True)
    kafka = settings.kafka

    def consumer() -> Any:
        return new_consumer(kafka, group_id=None, enable_auto_commit=False,
                            isolation_level="read_committed",
                            max_poll_records=settings.retention.batch_size,
                            client_id="churnpulse-retention")

    def producer(transactional_id: str | None) -> Any:
        return new_producer(kafka, acks="all", enable_idempotence=True,
                            client_id="churnpulse-retention")

    try:
        await Runner(config, service, consumer, producer).run()
    finally:
        service.locked = False
        with contextlib.suppress(Exception):
            await store.release(service.token)
    return service
