"""Redis Cluster support shared by the stores: split a multi-key call by hash slot, run the
pieces in one cluster pipeline (redis-py sends one pipeline per owning node, in parallel, and
follows MOVED/ASK and failovers), and reload a script a node does not know yet.

A Lua script may only touch keys of one slot in a cluster (the server refuses others with
CROSSSLOT), so a batch script over many customers runs once per slot: every key of a customer
carries its hash tag ``{c:<id>}``, so a customer's keys are always together; singletons (the
due-index shards, ``<prefix>:churned``, ``<prefix>:obs:due``) are written by plain commands.
What is atomic on one Redis (a whole batch) is atomic per slot on a cluster: per customer,
which is what the exactly-once rules need (docs/scaling.md).

>>> [sorted(g) for g in slot_groups(["a:{c:1}:f", "b:{c:2}:f", "c:{c:1}:obs"])]
[[0, 2], [1]]
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import NoScriptError

from streams.redis.client import call

T = TypeVar("T")
PARALLEL_CALLS = 32
"""Calls in flight at once when a batch is split by slot."""


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a Redis Cluster client (asyncio or blocking)."""
    import redis

    return isinstance(client, (aioredis.RedisCluster, redis.RedisCluster))


def slot_groups(keys: Sequence[str]) -> list[list[int]]:
    """Indexes of ``keys`` grouped by hash slot, in first-seen order."""
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key_slot(key.encode()), []).append(i)
    return list(groups.values())


class ClusterScript:
    """A Lua script run by SHA on every node that owns a slot it is sent to."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha: str | None = None

    async def load(self, client: aioredis.Redis) -> str:
        # SCRIPT LOAD goes to every primary in a cluster (a promoted replica may lack it:
        # NOSCRIPT then, and the calls that failed are sent again after a new load)
        self.sha = str(await call(client.script_load(self.source)))
        return self.sha

    async def run_per_slot(self, client: aioredis.Redis, keys: Sequence[str],
                           args_of: Callable[[list[int]], list[Any]]
                           ) -> list[tuple[list[int], Any]]:
        """Run the script once per slot group of ``keys``, concurrently (a cluster pipeline
        refuses scripts); ``args_of(indexes)`` gives the ARGV of the group. Returns
        (indexes, reply) per group."""
        groups = slot_groups(keys)
        if self.sha is None:
            await self.load(client)

        async def one(group: list[int]) -> Any:
            own = [keys[i] for i in group]
            try:
                return await call(client.evalsha(self.sha or "", len(own), *own,
                                                 *args_of(group)))
            except NoScriptError:  # a node that restarted or a promoted replica
                sha = await self.load(client)
                return await call(client.evalsha(sha, len(own), *own, *args_of(group)))

        replies = await gather_bounded([lambda g=g: one(g) for g in groups])  # type: ignore[misc]
        return list(zip(groups, replies, strict=True))


async def gather_bounded(calls: Sequence[Callable[[], Awaitable[T]]],
                         limit: int = PARALLEL_CALLS) -> list[T]:
    """Run ``calls`` concurrently, at most ``limit`` at a time (the cluster client opens a
    connection per call in flight); results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(make: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await make()

    return list(await asyncio.gather(*(one(c) for c in calls)))


class _Applies(Protocol):
    async def apply(self, events: Sequence[Any], due: Any = None) -> dict[str, Any]: ...

    def due_key(self, partition: int) -> str: ...


async def apply_per_slot(store: _Applies, client: aioredis.Redis,
                         by_customer: list[list[Any]], split: list[list[int]],
                         due: Mapping[str, tuple[int, float]] | None) -> dict[str, Any]:
    """The feature store's batch on a cluster: one script call per slot (each a batch of its
    own, so the exactly-once rule holds per customer as before), sent concurrently, and the
    due-index raised by one ZADD GT per partition shard (each its own slot)."""
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda g=group: store.apply([e for i in g for e in by_customer[i]])  # type: ignore[misc]
        for group in split]
    shards: dict[int, dict[str, float]] = {}
    for cid, (partition, when) in (due or {}).items():
        shards.setdefault(partition, {})[cid] = when
    calls += [lambda p=p, m=m: call(client.zadd(store.due_key(p), m, gt=True))  # type: ignore[misc]
              for p, m in shards.items()]
    out: dict[str, Any] = {}
    for reply in (await gather_bounded(calls))[:len(split)]:
        out.update(reply)
    return {evs[0].customer_id: out[evs[0].customer_id] for evs in by_customer}


def group_prefix(client: Any, prefix: str, group: str) -> str:
    """Head of the keys of a singleton group that one script or transaction writes together
    (``learner``, ``model``): ``<prefix>:<group>`` on one Redis (the layout as before), and
    ``<prefix>:{<group>}`` on a cluster, so the group's keys share one slot of their own.
    """
    return f"{prefix}:{{{group}}}" if is_cluster(client) else f"{prefix}:{group}"
