"""The learner process (``churnpulse learner``): the single writer of the model.

Each step (about once a second):

1. read the pipeline's watermark (the slowest events partition's sweep clock, published by
   the workers), then new churn labels (all partitions of the labels topic, from the
   checkpointed offsets); negatives are resolved by the watermark only once the labels are
   read up to the end they had after the watermark was read;
2. resolve and learn (:class:`streams.learner.loop.LearningLoop`);
3. write one checkpoint — learner state (all models, metrics), label offsets, version, and the
   *tombstones* (the snapshots just resolved) — as a single Redis value, atomically;
4. publish the champion as the next model version (scorers pick it up within ``poll_s``);
5. remove the tombstoned snapshots from the observation store.

A crash before 3 leaves the old checkpoint: the labels are read again from its offsets and the
snapshots are still pending, so every one is learned once. A crash after 3 replays the
tombstones (removal is idempotent) on start. A Redis lock with a fencing value keeps a second
learner from writing. Drift and promotion events go to the model-events topic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pickle
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from online_models.learner import Learner, PromotionRule
from online_models.model import RIVER_VERSION, ModelHandle
from online_models.observations import Observation
from streams.contracts import ChurnLabel, decode_label, encode
from streams.dead_letter import dead_letter_headers
from streams.errors import ConfigurationError, InvalidMessage
from streams.kafka.clients import new_consumer, new_producer
from streams.kafka.runner import Runner, RunnerConfig
from streams.learner.consumer import LabelStrategy
from streams.learner.erasure import serve_forget_requests
from streams.learner.loop import LabelCounts, LearningLoop, RecentIds
from streams.learner.tombstones import Tombstones
from streams.observability import metrics
from streams.records import RawRecord
from streams.redis.churned import RedisChurnedCustomers
from streams.redis.cluster import group_prefix
from streams.redis.model_registry import RedisModelRegistry
from streams.redis.observation_store import RedisObservationStore
from streams.redis.watermark_board import RedisWatermarkBoard
from streams.settings import Settings
from streams.signing import StateSigner, default_signer, signer_from_settings
from streams.timefmt import format_ts

log = logging.getLogger(__name__)
STATE_PURPOSE = "learner-state"
LOCK_TTL_MS = 15_000
STATUS_EVERY_S = 1.0  # the status's window figures, while steps come back to back
# KEYS[1] lock, ARGV[1] our token, ARGV[2] ttl ms. A step that ran longer than the TTL (a big
# batch for slow challengers) finds the lock expired: it may take it back unless another
# learner holds it now, which is what fencing must refuse.
TAKE_OR_KEEP_LOCK = (
    "local holder = redis.call('GET', KEYS[1]) "
    "if holder and holder ~= ARGV[1] then return 0 end "
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) "
)


@dataclass
class LearnerState:
    """Everything a restarted learner needs; pickled as one Redis value."""

    learner: Learner
    version: int = 0
    offsets: dict[int, int] = field(default_factory=dict)
    tombstones: list[Observation] = field(default_factory=list)
    recent_labels: RecentIds = field(default_factory=RecentIds)
    held: list[ChurnLabel] = field(default_factory=list)
    churn_times: dict[str, list[float]] = field(default_factory=dict)
    counts: LabelCounts = field(default_factory=LabelCounts)
    watermark: float = float("-inf")
    river: str = RIVER_VERSION

    def __setstate__(self, saved: dict[str, Any]) -> None:
        """Load a state pickled by an earlier churnpulse: fields added since get their
        defaults, and a plain deque of recent label ids becomes a :class:`RecentIds`."""
        for f in dataclasses.fields(self):
            if f.name not in saved:
                if f.default_factory is not dataclasses.MISSING:
                    saved[f.name] = f.default_factory()
                elif f.default is not dataclasses.MISSING:
                    saved[f.name] = f.default
        recent = saved.get("recent_labels")
        if not isinstance(recent, RecentIds):
            ids = RecentIds()
            for label_id in recent or ():
                ids.append(str(label_id))
            saved["recent_labels"] = ids
        self.__dict__.update(saved)


def new_learner(settings: Settings) -> Learner:
    m = settings.model
    return Learner.create(m.name, tuple(m.challengers), threshold=m.alert_threshold,
                          window=m.metrics_window,
                          rule=PromotionRule(m.promote_after, m.promote_margin),
                          learning_rate=m.learning_rate, l2=m.l2)


class LearnerStateStore:
    """The learner state in Redis, signed (:mod:`streams.signing`, purpose ``learner-state``):
    an unsigned or badly signed value is refused before it is unpickled."""

    def __init__(self, client: aioredis.Redis, prefix: str,
                 signer: StateSigner | None = None) -> None:
        self._client = client
        self._signer = signer or default_signer()
        head = group_prefix(client, prefix, "learner")  # one slot of its own on a cluster
        self.state_key = f"{head}:state"
        self.status_key = f"{head}:status"
        self.lock_key = f"{head}:lock"

    async def load(self) -> LearnerState | None:
        raw = await self._client.get(self.state_key)
        if raw is None:
            return None
        blob = raw if isinstance(raw, bytes) else str(raw).encode()
        data = self._signer.verify(STATE_PURPOSE, blob, self.state_key)
        state = pickle.loads(data)  # noqa: S301 - signature checked above
        if not isinstance(state, LearnerState):
            raise ConfigurationError(f"{self.state_key} does not hold a learner state")
        if state.river.split(".")[:2] != RIVER_VERSION.split(".")[:2]:
            raise ConfigurationError(f"learner state written with river {state.river}, "
                                     f"running {RIVER_VERSION}: retrain (churnpulse train)")
        return state

    async def save(self, state: LearnerState, token: str, status: dict[str, Any]) -> None:
        """Write state and status only while we hold the lock (fencing)."""
        ok = await self._client.eval(
            TAKE_OR_KEEP_LOCK +
            "redis.call('SET', KEYS[2], ARGV[3]) redis.call('SET', KEYS[3], ARGV[4]) return 1",
            3, self.lock_key, self.state_key, self.status_key, token, LOCK_TTL_MS,
            self._signer.sign(STATE_PURPOSE, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)),
            orjson.dumps(status))
        if not ok:
            raise ConfigurationError("lost the learner lock: another learner is writing")

    async def exists(self) -> bool:
        return bool(await self._client.exists(self.state_key))

    async def status(self) -> dict[str, Any] | None:
        raw = await self._client.get(self.status_key)
        return None if raw is None else dict(orjson.loads(raw))


async def acquire_lock(client: aioredis.Redis, key: str, token: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while not await client.set(key, token, nx=True, px=LOCK_TTL_MS):
        if time.monotonic() > deadline:
            holder = await client.get(key)
            raise ConfigurationError(f"another learner holds {key} ({holder!r}); only one "
                                     "learner may run")
        await asyncio.sleep(0.5)


async def renew_lock(client: aioredis.Redis, key: str, token: str) -> bool:
    """Extend our lock; take it back if it expired meanwhile and nobody else took it."""
    renewed = await client.eval(TAKE_OR_KEEP_LOCK + "return 1", 1, key, token, LOCK_TTL_MS)
    return bool(renewed)


def status_of(state: LearnerState, loop: LearningLoop, pending: int,
              previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The status saved with the state. With ``previous`` (a status of the same models), the
    metrics' window figures are taken from it and only the counters are fresh."""
    report = state.learner.report(window=previous is None)
    if previous is not None:
        before = previous.get("models", {})
        if set(before) != set(report["models"]):
            report = state.learner.report()
        else:
            report["models"] = {name: {**before[name], **m}
                                for name, m in report["models"].items()}
            report["served"] = {**previous.get("served", {}), **report["served"]}
    c = state.counts
    return {**report, "version": state.version, "labels": {**c.__dict__, "held": len(state.held)},
            "pending": pending,
            "watermark": format_ts(state.watermark) if state.watermark > 0 else None,
            "learn_calls": state.learner.learn_calls, "updated_at": format_ts(time.time()),
            "events": loop.events[-20:]}


class LearnerService:
    def __init__(self, settings: Settings, client: aioredis.Redis) -> None:
        self.settings = settings
        self.client = client
        prefix = settings.redis.key_prefix
        self.policy = settings.model.policy
        self.store = RedisObservationStore(client, prefix, self.policy)
        signer = signer_from_settings(settings)
        self.states = LearnerStateStore(client, prefix, signer)
        self.registry = RedisModelRegistry(client, prefix, signer)
        self.churned = RedisChurnedCustomers(client, prefix)
        self.board = RedisWatermarkBoard(client, prefix)
        self.token = f"{uuid.uuid4()}"
        self.state: LearnerState | None = None
        self.loop: LearningLoop | None = None
        self.invalid_labels = 0
        self.status: dict[str, Any] | None = None  # the last status saved (/metrics reads it)
        # the metrics' window figures (O(window) per model) are recomputed at most every
        # STATUS_EVERY_S while steps come back to back, and when the learner goes idle
        self._status_at: float | None = None
        self._status_whole = False
        self.published_at: float | None = None  # when this learner last published a model

    async def mark_churned(self, customer_id: str, ts: float) -> None:
        """Scorers skip a churned customer until it has an event after ``ts``."""
        await self.churned.mark(customer_id, ts)

    async def start(self, wait_s: float = 30.0) -> None:
        await acquire_lock(self.client, self.states.lock_key, self.token, wait_s)
        state = await self.states.load() or LearnerState(new_learner(self.settings))
        await self.store.remove(state.tombstones)  # finish what the last run checkpointed
        state.tombstones = []
        self.state = state
        self.loop = LearningLoop(self.store, state.learner, self.policy, self.mark_churned,
                                 state.recent_labels, state.counts, state.watermark,
                                 held=state.held, mark_many=self.churned.mark_many,
                                 deferred=True, churn_times=state.churn_times)
        if state.version and await self.registry.current_version() != self.model_version():
            await self.publish_model()
        log.info("learner ready at version %d (%d resolved so far)", state.version,
                 state.learner.total)

    async def serve_forgets(self) -> list[str]:
        """Erase the customers ``churnpulse forget`` asked for (streams.learner.erasure)."""
        state, loop = self.state, self.loop
        assert state is not None
        assert loop is not None

        async def save() -> None:
            loop.held = state.held
            await self.states.save(state, self.token,
                                   status_of(state, loop, await self.store.count()))

        return await serve_forget_requests(self.client, self.settings.redis.key_prefix,
                                           state, save)

    def model_version(self) -> str:
        assert self.state is not None
        return f"{self.state.version}-{self.state.learner.champion.name}"

    async def publish_model(self) -> None:
        assert self.state is not None
        learner = self.state.learner
        handle = ModelHandle(self.model_version(), learner.champion.model, {
            "model": learner.champion.name,
            "metrics": learner.champion.metrics.report(),
            "resolved": learner.total,
            "label_offsets": {str(p): o for p, o in sorted(self.state.offsets.items())},
            "feature_schema": feature_schema(self.settings, learner),
            "published_at": format_ts(time.time()),
        })
        await self.registry.publish(handle, keep=self.settings.model.keep_versions)
        self.published_at = time.time()

    async def step(self, records: list[Any], producer: AIOKafkaProducer | None,
                   watermark: float | None = None, caught_up: bool = True) -> int:
        """One learner step over fetched label records; returns resolutions learned.

        ``watermark``: the pipeline's (None: no worker has published one); labels are
        resolved once it reached their time, and snapshots whose horizon it passed resolve
        negative, but only when ``caught_up`` (every label published before the watermark
        was read has been read).
        """
        state, loop = self.state, self.loop
        assert state is not None
        assert loop is not None
        metrics.learner_stepped()
        resolved: list[Observation] = []
        learned = 0
        moved = False
        labels: list[ChurnLabel] = []
        for msg in records:
            state.offsets[msg.partition] = msg.offset + 1
            moved = True
            try:
                labels.append(decode_label(msg.value or b"", msg.key,
                                           self.settings.input.limits))
            except InvalidMessage as exc:
                self.invalid_labels += 1
                if producer is not None:
                    raw = RawRecord(msg.topic, msg.partition, msg.offset, msg.key, msg.value)
                    await producer.send_and_wait(
                        self.settings.topics.dead_letter, msg.value or b"", key=msg.key,
                        headers=dead_letter_headers(raw, exc, time.time()))
                    metrics.dead_lettered(exc.code)
        metrics.labels_read(label.ts for label in labels)
        held_before = len(loop.held)
        positives, dropped = await loop.on_labels(labels, watermark)
        resolved += [r.observation for r in positives] + dropped
        learned += len(positives)
        released = held_before != len(loop.held)
        if watermark is not None and caught_up:
            negatives = await loop.on_watermark(watermark)
            resolved += [r.observation for r in negatives]
            learned += len(negatives)
        state.held = loop.held
        loop.flush()
        state.watermark = loop.watermark
        if not (moved or resolved or released):
            if self.status is not None and not self._status_whole:  # idle: the whole status
                state.tombstones = []
                await self._save(state, loop, max(0, await self.store.count()), producer,
                                 whole=True)
            return 0
        state.version += 1 if learned else 0
        state.tombstones = Tombstones.of(resolved)
        pending = await self.store.count() - len({o.obs_id for o in resolved})
        await self._save(state, loop, max(0, pending), producer, publish=bool(learned),
                         resolved=resolved)
        return learned

    async def _save(self, state: LearnerState, loop: LearningLoop, pending: int,
                    producer: AIOKafkaProducer | None, publish: bool = False,
                    resolved: list[Observation] | None = None, whole: bool = False) -> None:
        """Checkpoint, publish, remove the tombstoned snapshots, announce events (module doc)."""
        now = time.monotonic()
        whole = whole or self.status is None or self._status_at is None or (
            now - self._status_at >= STATUS_EVERY_S)
        self.status = status_of(state, loop, pending, None if whole else self.status)
        if whole:
            self._status_at = now
        self._status_whole = whole
        with metrics.redis_timer("learner_checkpoint"):
            await self.states.save(state, self.token, self.status)
        if publish:
            await self.publish_model()
        if resolved:
            await self.store.remove(resolved)
        loop.settle()
        if producer is not None:
            for event in loop.events:
                await producer.send(self.settings.topics.model_events, encode(
                    {"event": event, "version": self.model_version(),
                     "at": format_ts(time.time())}))
        loop.events.clear()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Learn until ``stop`` is set (see :mod:`streams.learner.consumer`)."""
        await self.start()
        config = RunnerConfig(name="learner", batch_size=2000, poll_timeout_s=1.0,
                              commit="none", empty_batches=True)
        kafka = self.settings.kafka

        def consumer() -> Any:
            return new_consumer(kafka, group_id=None, enable_auto_commit=False,
                                client_id="churnpulse-learner")

        def producer(transactional_id: str | None) -> Any:
            return new_producer(kafka, acks="all")

        async def renew() -> bool:
            return await renew_lock(self.client, self.states.lock_key, self.token)

        strategy = LabelStrategy(self, stop or asyncio.Event(), renew)
        try:
            await Runner(config, strategy, consumer, producer).run()
        finally:
            await self.client.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                "return redis.call('DEL', KEYS[1]) end return 0", 1, self.states.lock_key,
                self.token)


def feature_schema(settings: Settings, learner: Learner) -> dict[str, Any]:
    """What a checkpoint was trained on: the feature settings and the features it has seen."""
    model = learner.champion.model
    steps = getattr(model, "steps", None)
    seen: list[str] = []
    if steps:
        first = next(iter(steps.values()))
        seen = sorted(str(k) for k in getattr(first, "means", {}))
    return {"features": settings.features.model_dump(mode="json"), "seen": seen}
