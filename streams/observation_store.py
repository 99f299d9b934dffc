"""Pending observations: scored snapshots waiting for their outcome (see
``online_models.observations`` for the semantics).

Redis layout::

    <prefix>:{c:<id>}:obs    hash: observation slot (int) -> observation JSON; TTL horizon + margin
    <prefix>:obs:due         sorted set: "<customer_id>|<slot>" scored by the time it resolves
                             negative (t + horizon)

``record`` uses HSETNX, so at most one snapshot per customer per slot is ever kept, and
recording the same snapshot twice (a replayed batch) changes nothing. Memory per pending
observation: the JSON of its feature vector (~1–2 KB for 30–60 features) plus ~80 bytes in the
due index; with a 1-day interval and a 30-day horizon, at most 30 per active customer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import orjson
import redis.asyncio as aioredis

from online_models.observations import LabelPolicy, Observation

TTL_MARGIN_S = 7 * 86400


def member(obs: Observation, policy: LabelPolicy) -> str:
    return f"{obs.customer_id}|{policy.slot(obs.t)}"


class ObservationStore(Protocol):
    async def record(self, observations: Sequence[Observation]) -> int:
        """Keep the snapshots whose (customer, slot) has none yet; returns how many were new."""
        ...

    async def pending(self, customer_id: str) -> list[Observation]: ...

    async def due(self, until: float, limit: int) -> list[Observation]:
        """Pending snapshots that resolve negative at or before event time ``until``."""
        ...

    async def remove(self, observations: Iterable[Observation]) -> None: ...

    async def count(self) -> int: ...


class InMemoryObservationStore:
    def __init__(self, policy: LabelPolicy) -> None:
        self._policy = policy
        self._by_customer: dict[str, dict[int, Observation]] = {}

    async def record(self, observations: Sequence[Observation]) -> int:
        new = 0
        for obs in observations:
            slots = self._by_customer.setdefault(obs.customer_id, {})
            slot = self._policy.slot(obs.t)
            if slot not in slots:
                slots[slot] = obs
                new += 1
        return new

    async def pending(self, customer_id: str) -> list[Observation]:
        return sorted(self._by_customer.get(customer_id, {}).values(), key=lambda o: o.t)

    async def due(self, until: float, limit: int) -> list[Observation]:
        found = [o for slots in self._by_customer.values() for o in slots.values()
                 if self._policy.due(o) <= until]
        found.sort(key=lambda o: (self._policy.due(o), o.customer_id))
        return found[:limit]

    async def remove(self, observations: Iterable[Observation]) -> None:
        for obs in observations:
            slots = self._by_customer.get(obs.customer_id, {})
            slots.pop(self._policy.slot(obs.t), None)
            if not slots:
                self._by_customer.pop(obs.customer_id, None)

    async def count(self) -> int:
        return sum(len(s) for s in self._by_customer.values())


class RedisObservationStore:
    def __init__(self, client: aioredis.Redis, prefix: str, policy: LabelPolicy) -> None:
        self._client = client
        self._prefix = prefix
        self._policy = policy
        self._due_key = f"{prefix}:obs:due"
        self._ttl = int(policy.horizon_s + TTL_MARGIN_S)

    def key(self, customer_id: str) -> str:
        return f"{self._prefix}:{{c:{customer_id}}}:obs"

    async def record(self, observations: Sequence[Observation]) -> int:
        if not observations:
            return 0
        async with self._client.pipeline(transaction=False) as pipe:
            for obs in observations:
                key = self.key(obs.customer_id)
                pipe.hsetnx(key, str(self._policy.slot(obs.t)), orjson.dumps(obs.to_json()))
                pipe.expire(key, self._ttl)
            replies = await pipe.execute()
        new = [obs for obs, added in zip(observations, replies[::2], strict=True) if added]
        if new:
            await self._client.zadd(self._due_key, {member(o, self._policy): self._policy.due(o)
                                                    for o in new})
        return len(new)

    async def pending(self, customer_id: str) -> list[Observation]:
        raw = await self._client.hgetall(self.key(customer_id))
        return sorted((Observation.from_json(orjson.loads(v)) for v in raw.values()),
                      key=lambda o: o.t)

    async def due(self, until: float, limit: int) -> list[Observation]:
        raw_members = await self._client.zrangebyscore(self._due_key, "-inf", until, start=0,
                                                       num=limit)
        members = [m.decode() if isinstance(m, bytes) else str(m) for m in raw_members]
        if not members:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for m in members:
                cid, _, slot = m.rpartition("|")
                pipe.hget(self.key(cid), slot)
            replies = await pipe.execute()
        found = [Observation.from_json(orjson.loads(r)) for r in replies if r is not None]
        stale = [m for m, r in zip(members, replies, strict=True) if r is None]
        if stale:  # the hash expired or was forgotten: drop the index entries too
            await self._client.zrem(self._due_key, *stale)
        return found

    async def remove(self, observations: Iterable[Observation]) -> None:
        obs = list(observations)
        if not obs:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for o in obs:
                pipe.hdel(self.key(o.customer_id), str(self._policy.slot(o.t)))
            pipe.zrem(self._due_key, *(member(o, self._policy) for o in obs))
            await pipe.execute()

    async def count(self) -> int:
        return int(await self._client.zcard(self._due_key))
