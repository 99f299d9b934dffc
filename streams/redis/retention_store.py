"""The live retention state in Redis: the retention process's checkpoint, and the alerter's view.

Keys (``<head>`` = ``<prefix>:retention``, or ``<prefix>:{retention}`` on a cluster so the
group shares one slot)::

    <head>:state     signed JSON (purpose ``retention-state``): the loop's joiner, bandit counts
                     and counters, the next offset of every input partition, the outbox (the
                     outcome records of the last checkpoint, published after it)
    <head>:reco      signed pickle (purpose ``retention-recommender``) of the offer recommender
                     (River ``BiasedMF`` + popularity counts); absent before the first answer
    <head>:reco_offsets  signed JSON (purpose ``retention-reco-offsets``): the offer events'
                     offsets the stored recommender has learned up to (it is checkpointed less
                     often: ``retention.reco_checkpoint_s``; a restart re-reads the offer events
                     from there into the recommender only)
    <head>:bandit    signed JSON (purpose ``retention-bandit``): the bandit counts alone
    <head>:version   the checkpoint's number; the alerter reloads the counts when it changes
    <head>:reco_version  the checkpoint that last wrote ``reco``; the alerter reloads the
                     recommender only when this changes
    <head>:lock      the single writer's lock (a token, 15 s, renewed every step)

One checkpoint is one MULTI/EXEC of these keys (``reco`` only when it changed), so the state,
the offsets it covers and the recommender always belong together. Everything that is
unpickled is signed with a key that is not in Redis (:mod:`streams.signing`) and verified
before it is loaded; a refused blob is logged and the alerter keeps what it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from alerts.advice import Advice
from alerts.bandit import BanditParams, BanditState
from alerts.reco import OfferRecommender
from streams.errors import ConfigurationError, TransientError
from streams.redis.client import call
from streams.redis.cluster import group_prefix
from streams.settings import Settings
from streams.signing import StateSigner, default_signer, signer_from_settings

log = logging.getLogger(__name__)
STATE_PURPOSE = "retention-state"
RECO_PURPOSE = "retention-recommender"
BANDIT_PURPOSE = "retention-bandit"
RECO_OFFSETS_PURPOSE = "retention-reco-offsets"
LOCK_TTL_MS = 15_000


@dataclass
class Checkpoint:
    """What :meth:`RetentionStore.load` returns (the recommender already verified)."""

    version: int
    state: dict[str, Any]  # loop JSON, offsets, outbox
    recommender: OfferRecommender | None
    reco_offsets: dict[str, int]  # offer events learned by ``recommender``


class RetentionStore:
    def __init__(self, client: aioredis.Redis, prefix: str,
                 signer: StateSigner | None = None) -> None:
        self._client = client
        self._signer = signer or default_signer()
        head = group_prefix(client, prefix, "retention")
        self.state_key, self.reco_key = f"{head}:state", f"{head}:reco"
        self.bandit_key, self.version_key = f"{head}:bandit", f"{head}:version"
        self.reco_offsets_key = f"{head}:reco_offsets"
        self.reco_version_key = f"{head}:reco_version"
        self.lock_key = f"{head}:lock"

    async def save(self, version: int, state: dict[str, Any], bandit: dict[str, Any],
                   recommender: OfferRecommender | None,
                   reco_offsets: dict[str, int] | None = None) -> None:
        """One checkpoint, atomically (``recommender`` None: leave the stored one;
        ``reco_offsets`` None: leave the stored ones)."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self.state_key, self._signer.sign(STATE_PURPOSE, orjson.dumps(state)))
            pipe.set(self.bandit_key, self._signer.sign(BANDIT_PURPOSE, orjson.dumps(bandit)))
            if recommender is not None:
                pipe.set(self.reco_key, self._signer.sign(RECO_PURPOSE, recommender.to_bytes()))
                pipe.set(self.reco_version_key, str(version))
            if reco_offsets is not None:
                pipe.set(self.reco_offsets_key, self._signer.sign(RECO_OFFSETS_PURPOSE,
                                                                  orjson.dumps(reco_offsets)))
            pipe.set(self.version_key, str(version))
            await call(pipe.execute())

    async def load(self) -> Checkpoint | None:
        """The last checkpoint (None: none yet); a bad signature raises
        :class:`~streams.signing.SignatureError` (never unpickled)."""
        version, state, reco, offsets = await call(self._client.mget(
            self.version_key, self.state_key, self.reco_key, self.reco_offsets_key))
        if state is None:
            return None
        obj = orjson.loads(self._signer.verify(STATE_PURPOSE, _bytes(state), self.state_key))
        covered = {} if offsets is None else orjson.loads(self._signer.verify(
            RECO_OFFSETS_PURPOSE, _bytes(offsets), self.reco_offsets_key))
        return Checkpoint(int(version or 0), obj, self._recommender(reco),
                          {str(k): int(v) for k, v in covered.items()})

    async def version(self) -> str | None:
        raw = await call(self._client.get(self.version_key))
        return None if raw is None else _bytes(raw).decode()

    async def advice_parts(self, held_reco: str | None, want_reco: bool = True) -> tuple[
            str | None, str | None, OfferRecommender | None, BanditState | None]:
        """The version, the recommender's version, the recommender (None when it is still
        ``held_reco``, or not wanted) and the bandit counts the alerter uses."""
        version, reco_version, bandit = await call(self._client.mget(
            self.version_key, self.reco_version_key, self.bandit_key))
        counts = None if bandit is None else BanditState.from_json(orjson.loads(
            self._signer.verify(BANDIT_PURPOSE, _bytes(bandit), self.bandit_key)))
        rv = None if reco_version is None else _bytes(reco_version).decode()
        reco = None
        if want_reco and rv is not None and rv != held_reco:
            reco = await self.recommender()
        return (None if version is None else _bytes(version).decode(), rv, reco, counts)

    async def recommender(self) -> OfferRecommender | None:
        """The published recommender alone (None: none yet; ``churnpulse report offers``)."""
        return self._recommender(await call(self._client.get(self.reco_key)))

    def _recommender(self, raw: Any) -> OfferRecommender | None:
        if raw is None:
            return None
        return OfferRecommender.from_bytes(self._signer.verify(RECO_PURPOSE, _bytes(raw),
                                                               self.reco_key))

    async def acquire(self, token: str, wait_s: float) -> bool:
        """Take the single writer's lock, waiting up to ``wait_s`` for a previous holder."""
        deadline = time.monotonic() + wait_s
        while True:
            if await call(self._client.set(self.lock_key, token, nx=True, px=LOCK_TTL_MS)):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.5)

    async def renew(self, token: str) -> bool:
        got = await call(self._client.eval(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then "
            "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0", 1, self.lock_key,
            token, LOCK_TTL_MS))
        return bool(got)

    async def release(self, token: str) -> None:
        await self._client.eval(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then "
            "return redis.call('DEL', KEYS[1]) end return 0", 1, self.lock_key, token)


def _bytes(raw: bytes | str) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode()


class AdviceWatcher:
    """The alerter's view of the newest published state (:class:`alerts.advice.Advice`).

    :meth:`current` is what :class:`alerts.enrich.AlertConfig` calls per alert: it returns the
    advice held and, at most every ``poll_s`` seconds, starts a background :meth:`refresh` on
    the running loop (the version is one GET; the state is loaded only when it changed).
    """

    def __init__(self, store: RetentionStore, params: BanditParams | None, k: int = 3,
                 offers: bool = True, poll_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._params = params
        self._k = k
        self._offers = offers
        self._poll_s = poll_s
        self._clock = clock
        self._next = float("-inf")
        self._advice: Advice | None = None
        self._refused: str | None = None
        self._reco_version: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def current(self) -> Advice | None:
        now = self._clock()
        if (now >= self._next and not self._closed
                and (self._task is None or self._task.done())):
            self._next = now + self._poll_s
            with contextlib.suppress(RuntimeError):  # no running loop (a tool): keep it
                self._task = asyncio.get_running_loop().create_task(self.refresh())
        return self._advice

    async def aclose(self) -> None:
        """No more background refreshes; the one in flight, if any, is cancelled and awaited.
        Call it before closing the Redis client: a refresh still running then failed outside
        any caller ("Task exception was never retrieved")."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def refresh(self) -> None:
        """Load the published state if its version changed (errors logged, advice kept)."""
        version: str | None = None
        try:
            version = await self._store.version()
            held = self._advice.version if self._advice is not None else None
            if version is None or version == held or version == self._refused:
                return
            held_reco = self._advice.recommender if self._advice is not None else None
            version, reco_version, reco, bandit = await self._store.advice_parts(
                self._reco_version, self._offers)
            if version is None:
                return
            if reco is None and reco_version == self._reco_version:
                reco = held_reco  # unchanged: not loaded again
            self._advice = Advice(version, reco if self._offers else None, bandit,
                                  self._params, self._k)
            self._reco_version = reco_version if reco is not None else None
            log.info("retention advice version %s loaded", version)
        except (OSError, aioredis.RedisError, TransientError) as exc:  # Redis away: next poll
            log.warning("cannot read the retention advice, keeping what is held: %s", exc)
        except (ValueError, TypeError, ConfigurationError) as exc:
            # incl. SignatureError (never unpickled) and an ACL that denies the keys
            if version != self._refused:
                log.error("cannot load retention advice version %s, keeping what is held: %s",
                          version, exc)
            self._refused = version


def advice_watcher(settings: Settings, client: aioredis.Redis) -> AdviceWatcher | None:
    """The alerter's watcher (None when neither offers nor the learning policy are on)."""
    retention = settings.retention
    if not (retention.offers or retention.bandit):
        return None
    return AdviceWatcher(RetentionStore(client, settings.redis.key_prefix,
                                        signer_from_settings(settings)),
                         retention.bandit_params() if retention.bandit else None,
                         retention.offers_k, retention.offers, retention.poll_s)
