"""Pending observations: scored snapshots waiting for their outcome (see
``online_models.observations`` for the semantics).

Redis layout::

    <prefix>:{c:<id>}:obs    hash: observation slot (int) -> observation JSON, zlib-compressed;
                             TTL horizon + margin
    <prefix>:obs:due         sorted set: "<customer_id>|<slot>" scored by the time it resolves
                             negative (t + horizon)

Churn marks are in :mod:`streams.redis.churned`; :meth:`RedisObservationStore.record_scored`
reads and clears them in the same script when both live in the same Redis.

``record`` uses HSETNX, so at most one snapshot per customer per slot is ever kept, and
recording the same snapshot twice (a replayed batch) changes nothing. Memory per pending
observation (measured, ``bench/bench_learner.py``, 44 features): ~0.9 KB in the customer's hash
plus the due-index entry; with a 1-day interval and a 30-day horizon, at most 30 per active
customer (docs/learning.md has the arithmetic).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from online_models.observations import LabelPolicy, Observation
from streams.redis.churned import ChurnedCustomers, RedisChurnedCustomers
from streams.redis.client import call
from streams.redis.cluster import is_cluster

TTL_MARGIN_S = 7 * 86400
LUA_OBSERVE = Path(__file__).with_name("lua") / "observe.lua"


@dataclass(frozen=True, slots=True)
class ScoredSnapshot:
    """A customer the worker has just scored.

    ``observation`` is the snapshot to keep (``None`` when the worker knows the customer's
    slot is taken already: then only the churn check is done); ``newest_event`` is the
    customer's newest event time, which the churn check compares with the churn time.
    """

    customer_id: str
    newest_event: float
    observation: Observation | None


@dataclass
class ObserveOutcome:
    """What :meth:`ObservationStore.record_scored` did with a batch."""

    churned: set[str] = field(default_factory=set)  # not to be scored (nothing recorded)
    recorded: int = 0
    returned: int = 0


def encode_observation(obs: Observation) -> bytes:
    """A snapshot as stored: its JSON, zlib-compressed (level 1).

    44 features: 1,961 bytes of JSON, 840 compressed, ~15 µs (once per customer and interval).

    >>> o = Observation("c", 1.5, {"log_events_total": 2.0}, 0.25, "3-logreg")
    >>> decode_observation(encode_observation(o)) == o
    True
    >>> decode_observation(orjson.dumps(o.to_json())) == o  # uncompressed JSON still reads
    True
    """
    return zlib.compress(orjson.dumps(obs.to_json()), 1)


def decode_observation(raw: bytes | str) -> Observation:
    data = raw.encode() if isinstance(raw, str) else raw
    if data[:1] != b"{":
        data = zlib.decompress(data)
    return Observation.from_json(orjson.loads(data))


async def pending_of(store: ObservationStore, customer_ids: Sequence[str]
                     ) -> dict[str, list[Observation]]:
    """Pending snapshots of several customers: one round trip when the store has
    ``pending_many`` (both stores here), else one call per customer."""
    many = getattr(store, "pending_many", None)
    if many is not None:
        found: dict[str, list[Observation]] = await many(customer_ids)
        return found
    return {cid: await store.pending(cid) for cid in customer_ids}


async def record_scored_generic(store: ObservationStore, items: Sequence[ScoredSnapshot],
                                churned: ChurnedCustomers | None) -> ObserveOutcome:
    """:meth:`ObservationStore.record_scored` from the store's other methods (two calls)."""
    outcome = ObserveOutcome()
    if not items:
        return outcome
    times = (await churned.churned_since([i.customer_id for i in items])
             if churned is not None else {})
    back: list[str] = []
    keep: list[Observation] = []
    for item in items:
        churn = times.get(item.customer_id)
        if churn is not None and churn >= item.newest_event:
            outcome.churned.add(item.customer_id)
            continue
        if churn is not None:
            back.append(item.customer_id)
        if item.observation is not None:
            keep.append(item.observation)
    if back and churned is not None:
        await churned.returned(back)
    outcome.returned = len(set(back))
    outcome.recorded = await store.record(keep)
    return outcome


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

    async def record_scored(self, items: Sequence[ScoredSnapshot],
                            churned: ChurnedCustomers | None) -> ObserveOutcome:
        """The worker's step: skip churned customers, clear returned ones, record the rest.

        Redis does it in one round trip (one script) when ``churned`` is in the same Redis.
        """
        ...


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

    async def pending_many(self, customer_ids: Sequence[str]) -> dict[str, list[Observation]]:
        return {cid: await self.pending(cid) for cid in customer_ids}

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

    async def record_scored(self, items: Sequence[ScoredSnapshot],
                            churned: ChurnedCustomers | None) -> ObserveOutcome:
        return await record_scored_generic(self, items, churned)


class RedisObservationStore:
    def __init__(self, client: aioredis.Redis, prefix: str, policy: LabelPolicy) -> None:
        self._client = client
        self._prefix = prefix
        self._policy = policy
        self._due_key = f"{prefix}:obs:due"
        self._churned_key = f"{prefix}:churned"
        self._ttl = int(policy.horizon_s + TTL_MARGIN_S)
        self._observe_source = LUA_OBSERVE.read_text()
        self._observe_sha: str | None = None

    def key(self, customer_id: str) -> str:
        return f"{self._prefix}:{{c:{customer_id}}}:obs"

    async def record(self, observations: Sequence[Observation]) -> int:
        if not observations:
            return 0
        async with self._client.pipeline(transaction=False) as pipe:
            for obs in observations:
                key = self.key(obs.customer_id)
                pipe.hsetnx(key, str(self._policy.slot(obs.t)), encode_observation(obs))
                pipe.expire(key, self._ttl)
            replies = await pipe.execute()
        new = [obs for obs, added in zip(observations, replies[::2], strict=True) if added]
        if new:
            await self._client.zadd(self._due_key, {member(o, self._policy): self._policy.due(o)
                                                    for o in new})
        return len(new)

    async def pending(self, customer_id: str) -> list[Observation]:
        raw = await self._client.hgetall(self.key(customer_id))
        return sorted((decode_observation(v) for v in raw.values()),
                      key=lambda o: o.t)

    async def pending_many(self, customer_ids: Sequence[str]) -> dict[str, list[Observation]]:
        if not customer_ids:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for cid in customer_ids:
                pipe.hgetall(self.key(cid))
            replies = await call(pipe.execute())
        return {cid: sorted((decode_observation(v) for v in raw.values()),
                            key=lambda o: o.t)
                for cid, raw in zip(customer_ids, replies, strict=True)}

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
        found = [decode_observation(r) for r in replies if r is not None]
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

    async def record_scored(self, items: Sequence[ScoredSnapshot],
                            churned: ChurnedCustomers | None) -> ObserveOutcome:
        if (not isinstance(churned, RedisChurnedCustomers) or churned.key != self._churned_key
                or is_cluster(self._client)):  # one script would span slots: plain commands
            return await record_scored_generic(self, items, churned)
        outcome = ObserveOutcome()
        if not items:
            return outcome
        policy = self._policy
        keys = [self._churned_key, self._due_key]
        payloads: list[bytes] = []
        meta: list[list[Any]] = []
        for item in items:
            obs = item.observation
            if obs is None:
                meta.append([item.customer_id, item.newest_event, 0])
                continue
            keys.append(self.key(item.customer_id))
            payloads.append(encode_observation(obs))
            meta.append([item.customer_id, item.newest_event, len(payloads),
                         policy.slot(obs.t), policy.due(obs)])
        args: list[Any] = [self._ttl, orjson.dumps(meta), *payloads]
        codes = await self._observe(keys, args)
        for item, code in zip(items, codes, strict=True):
            code = int(code)
            if code == 0:
                outcome.churned.add(item.customer_id)
                continue
            if code >= 10:
                outcome.returned += 1
            if code % 10 == 1:
                outcome.recorded += 1
        return outcome

    async def _observe(self, keys: list[str], args: list[Any]) -> list[Any]:
        if self._observe_sha is None:
            self._observe_sha = await call(self._client.script_load(self._observe_source))
        try:
            return list(await call(self._client.evalsha(self._observe_sha, len(keys), *keys,
                                                         *args)))
        except NoScriptError:  # the server restarted or flushed its script cache
            self._observe_sha = await call(self._client.script_load(self._observe_source))
            return list(await call(self._client.evalsha(self._observe_sha, len(keys), *keys,
                                                         *args)))
