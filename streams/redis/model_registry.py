"""Published model versions in Redis, and the scorers' view of the newest one.

Keys::

    <prefix>:model:current        the newest published version (string)
    <prefix>:model:v:<version>    checkpoint bytes (see online_models.model.dump_checkpoint):
                                  the River model, the River version, and ``meta``: the feature
                                  schema, the label offsets learned so far, the delayed metrics
                                  and the number of resolutions at publication
    <prefix>:model:versions       list of the versions kept, newest first (``keep`` of them)

Checkpoints are signed (:mod:`streams.signing`, purpose ``model-checkpoint``) with a key that is
not in Redis; :meth:`RedisModelRegistry.load` checks the signature before unpickling and raises
:class:`~streams.signing.SignatureError` for an unsigned or badly signed checkpoint (the
watcher logs it and keeps scoring with the model it has).

The learner (:mod:`streams.learner.service`) is the single writer: it publishes a checkpoint
and moves ``current`` in one transaction, and drops the versions beyond ``keep``. Scorers call
:meth:`ModelWatcher.current` on every batch; it re-reads the version at most every ``poll_s``
seconds and loads a new checkpoint only when the version changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from online_models.model import (
    UNTRAINED_VERSION,
    ModelHandle,
    dump_checkpoint,
    load_checkpoint,
    make_model,
)
from streams.redis.cluster import group_prefix
from streams.signing import StateSigner, default_signer

log = logging.getLogger(__name__)
PURPOSE = "model-checkpoint"


class RedisModelRegistry:
    def __init__(self, client: aioredis.Redis, prefix: str,
                 signer: StateSigner | None = None) -> None:
        """``signer``: the processes pass the one of their settings; None = the signer of
        the settings in the environment (tools and tests)."""
        self._client = client
        self._signer = signer or default_signer()
        head = group_prefix(client, prefix, "model")  # one slot of its own on a cluster
        self._current = f"{head}:current"
        self._prefix = f"{head}:v:"
        self._versions = f"{head}:versions"

    async def publish(self, handle: ModelHandle, keep: int | None = None) -> None:
        """Store the checkpoint and make it current; keep only the newest ``keep`` versions."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self._prefix + handle.version,
                     self._signer.sign(PURPOSE, dump_checkpoint(handle)))
            pipe.set(self._current, handle.version)
            pipe.lrem(self._versions, 0, handle.version)
            pipe.lpush(self._versions, handle.version)
            await pipe.execute()
        if keep is not None:
            old = await self._client.lrange(self._versions, keep, -1)
            if old:
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.ltrim(self._versions, 0, keep - 1)
                    pipe.delete(*(self._prefix + _text(v) for v in old))
                    await pipe.execute()

    async def versions(self) -> list[str]:
        """Versions kept, newest first."""
        return [_text(v) for v in await self._client.lrange(self._versions, 0, -1)]

    async def current_version(self) -> str | None:
        raw = await self._client.get(self._current)
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def load(self, version: str) -> ModelHandle:
        data = await self._client.get(self._prefix + version)
        if data is None:
            raise LookupError(f"model version {version!r} is not in the registry")
        blob = data if isinstance(data, bytes) else data.encode()
        return load_checkpoint(self._signer.verify(PURPOSE, blob, self._prefix + version))


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class ModelWatcher:
    """Holds the model scorers use; follows the registry's newest version."""

    def __init__(self, registry: RedisModelRegistry, fallback: ModelHandle | None = None,
                 poll_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._registry = registry
        self._handle = fallback or ModelHandle(UNTRAINED_VERSION, make_model())
        self._poll_s = poll_s
        self._clock = clock
        self._next_check = float("-inf")
        self._refused: str | None = None

    @property
    def handle(self) -> ModelHandle:
        return self._handle

    async def current(self) -> ModelHandle:
        now = self._clock()
        if now < self._next_check:
            return self._handle
        self._next_check = now + self._poll_s
        version = await self._registry.current_version()
        if version is not None and version != self._handle.version:
            try:
                self._handle = await self._registry.load(version)
                log.info("scoring with model version %s", version)
            except (LookupError, ValueError) as exc:  # incl. SignatureError: never unpickled
                if version != self._refused:  # once per version, not every poll
                    log.error("cannot load model version %s, keeping %s: %s",
                              version, self._handle.version, exc)
                self._refused = version
        return self._handle
