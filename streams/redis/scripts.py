"""Lua scripts called by SHA on one Redis (the feature store, the worker's feature cache, the
observation store).

:class:`Scripts` loads a script on its first call (``SCRIPT LOAD``), calls it with
``EVALSHA``, and loads it again once when the server answers NOSCRIPT (it restarted or its
script cache was flushed). A call may carry ``ZADD GT`` commands in the same round trip (one
non-transactional pipeline); an error in any of its replies is raised. Redis Cluster goes
through :class:`streams.redis.cluster.ClusterScript` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, ResponseError

from streams.redis.client import call


class Scripts:
    """Named Lua scripts of one client (module docstring)."""

    def __init__(self, client: aioredis.Redis, sources: Mapping[str, str]) -> None:
        self._client = client
        self._source = dict(sources)
        self._sha: dict[str, str] = {}

    def loaded(self, name: str) -> bool:
        """Whether script ``name`` has been loaded (called at least once)."""
        return name in self._sha

    async def preload(self, *names: str) -> None:
        """``SCRIPT LOAD`` the scripts ``names`` (all when none) not loaded yet: the worker's
        warm-up, so that the first batch makes no extra round trip (no key changes)."""
        for name in names or tuple(self._source):
            if name not in self._sha:
                self._sha[name] = await call(self._client.script_load(self._source[name]))

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any],
                  zadds: Sequence[tuple[str, dict[str, float]]] = ()) -> Any:
        """The script's reply (``None`` when ``keys`` is empty: only ``zadds`` are sent)."""
        if name not in self._sha:
            self._sha[name] = await call(self._client.script_load(self._source[name]))
        try:
            return await self._pipeline(name, keys, args, zadds)
        except NoScriptError:  # the server restarted or flushed its script cache
            self._sha[name] = await call(self._client.script_load(self._source[name]))
            return await self._pipeline(name, keys, args, zadds)

    async def _pipeline(self, name: str, keys: Sequence[str], args: Sequence[Any],
                        zadds: Sequence[tuple[str, dict[str, float]]]) -> Any:
        if not zadds:
            return await call(self._client.evalsha(self._sha[name], len(keys), *keys, *args))
        pipe = self._client.pipeline(transaction=False)
        if keys:
            pipe.evalsha(self._sha[name], len(keys), *keys, *args)
        for key, mapping in zadds:
            pipe.zadd(key, mapping, gt=True)
        results = await call(pipe.execute(raise_on_error=False))
        for result in results:
            if isinstance(result, ResponseError):
                raise result
        return results[0] if keys else None
