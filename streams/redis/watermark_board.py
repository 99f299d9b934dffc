"""The workers' event-time clocks, published for the learner (one Redis hash)."""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio as aioredis

from streams.redis.client import call, raise_fields


class RedisWatermarkBoard:
    """Per-partition event-time clocks the workers publish for the learner.

    ``<prefix>:watermarks`` hash: events partition -> event time up to which that partition's
    customers were scored (only ever raised). The learner resolves negatives up to the
    slowest partition's.
    """

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self.key = f"{prefix}:watermarks"

    async def publish(self, marks: Mapping[int, float]) -> None:
        if not marks:
            return
        await raise_fields(self._client, self.key, {str(p): m for p, m in marks.items()})

    async def slowest(self) -> float | None:
        raw = await call(self._client.hgetall(self.key))
        values = [float(v) for v in raw.values()]
        return min(values) if values else None
