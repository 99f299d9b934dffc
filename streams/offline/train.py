"""Warm start (``churnpulse train``): a first model from history, handed to the live pipeline.

The history goes through the backtest (:mod:`streams.offline.backtest`: the live code path,
in-process), then the result is written to Redis under the configured key prefix, so that

* **workers** score with it at once: the champion is published to the model registry
  (:class:`~streams.redis.model_registry.RedisModelRegistry`) as version ``<n>-<champion>``;
* **``churnpulse learner``** continues from it: the learner state (every model, its delayed
  metrics, the version counter, the label ids seen, the watermark) is saved with
  :class:`~streams.learner.service.LearnerStateStore` under the learner lock, exactly as the
  learner checkpoints it, with no label offsets (the learner reads the labels topic from its
  start; labels it already learned are recognised by id);
* the snapshots still waiting for their outcome at the end of the history go to the Redis
  observation store, so the live learner resolves them (a churn label, or the watermark);
* customers who churned and did not come back are marked churned, so workers skip them.

Feature state is not written: the workers build it from the events they consume. Train on the
history, or replay it through Kafka — not both, or the replayed events are learned again.
A learner state that is already in Redis is kept unless ``replace=True``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

from online_models.model import ModelHandle
from streams.errors import ConfigurationError
from streams.learner.service import (
    LearnerState,
    LearnerStateStore,
    acquire_lock,
    feature_schema,
    status_of,
)
from streams.offline.backtest import BacktestRun
from streams.redis.churned import RedisChurnedCustomers
from streams.redis.model_registry import RedisModelRegistry
from streams.redis.observation_store import RedisObservationStore
from streams.settings import Settings
from streams.signing import signer_from_settings
from streams.timefmt import format_ts

LOOP_STATE = ("recent_labels", "counts", "watermark", "held", "churn_times")


@dataclass(frozen=True)
class WarmStart:
    """What :func:`publish_warm_start` wrote."""

    version: str
    resolved: int
    pending: int
    churned: int
    prefix: str


async def publish_warm_start(settings: Settings, client: aioredis.Redis, run: BacktestRun,
                             replace: bool = False, lock_wait_s: float = 5.0) -> WarmStart:
    """Write the backtest's learner, model and pending snapshots to Redis (see module doc)."""
    prefix = settings.redis.key_prefix
    signer = signer_from_settings(settings)
    states = LearnerStateStore(client, prefix, signer)
    token = f"train-{uuid.uuid4()}"
    try:
        await acquire_lock(client, states.lock_key, token, lock_wait_s)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc}: stop `churnpulse learner` before training") from None
    try:
        if not replace and await states.exists():  # --replace needs no (signed) state
            raise ConfigurationError(
                f"a learner state is already in Redis ({states.state_key}); pass --replace to "
                "overwrite it with the warm start")
        if run.version == 0:
            raise ConfigurationError("the history resolved no snapshot: nothing was learned "
                                     "(is the labels file empty, or the history shorter "
                                     "than the horizon?)")
        loop = run.loop
        state = LearnerState(run.learner, version=run.version, offsets={}, tombstones=[])
        for name in LOOP_STATE:  # what LearnerService.start hands from the state to its loop
            if hasattr(state, name) and hasattr(loop, name):
                setattr(state, name, getattr(loop, name))
        pending = run.observations.all()
        observations = RedisObservationStore(client, prefix, run.policy)
        await observations.record(pending)
        churned = RedisChurnedCustomers(client, prefix)
        for cid, ts in run.churned.times.items():
            await churned.mark(cid, ts)
        await states.save(state, token, status_of(state, loop, len(pending)))
        champion = run.learner.champion
        version = f"{run.version}-{champion.name}"
        registry = RedisModelRegistry(client, prefix, signer)
        await registry.publish(ModelHandle(version, champion.model, {
            "model": champion.name,
            "metrics": champion.metrics.report(),
            "resolved": run.learner.total,
            "label_offsets": {},
            "feature_schema": feature_schema(settings, run.learner),
            "published_at": format_ts(time.time()),
            "warm_start": True,
        }), keep=settings.model.keep_versions)
    finally:
        await client.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then "
                          "return redis.call('DEL', KEYS[1]) end return 0", 1,
                          states.lock_key, token)
    return WarmStart(version, run.learner.total, len(pending), len(run.churned.times), prefix)
