"""Redis Cluster support shared by the stores: split a multi-key call by hash slot, send the
pieces as one pipeline per owning primary, in parallel, and reload a script a node does not
know yet.

The replica barrier (:func:`write_commands`, ``CHURN_REDIS__WAIT_REPLICAS``, default 1): each
primary's pipeline ends with ``WAIT`` on the connection that sent its writes, and the call
succeeds only when every primary written to has that many replicas holding them; otherwise a
:class:`~streams.errors.TransientError` (the batch is retried, its offsets not committed).
These pipelines are sent to the nodes directly (``ClusterNode.execute_pipeline``): redis-py's
cluster pipeline sends a keyless ``WAIT`` to its default node, whichever node took the writes
(which then confirms writes it never had), and re-sends a redirected write alone on another
connection, past the ``WAIT``; here a moved slot is an error and the slot map is read again.
With the barrier off the pieces go through redis-py's cluster pipeline (which follows MOVED/ASK
and failovers itself), scripts as raw ``EVALSHA`` commands (redis-py blocks its
``pipeline().evalsha`` helper on a cluster, not the command). One pipeline per node instead of
one call per slot cut the worker's client CPU per EVALSHA from ~82 µs to ~16 µs (500
single-slot calls, 3 primaries; docs/scaling.md).

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
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, PipelineCommand
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.errors import TransientError
from streams.redis.client import Durability, call, durability


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
        """Run the script once per slot group of ``keys``, all in one cluster pipeline (one
        pipeline per node); ``args_of(indexes)`` gives the ARGV of the group. Returns
        (indexes, reply) per group."""
        groups = slot_groups(keys)
        calls = [([keys[i] for i in group], args_of(group)) for group in groups]
        replies = await self.run_calls(client, calls)
        return list(zip(groups, replies, strict=True))

    async def run_calls(self, client: aioredis.Redis,
                        calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
                        also: Sequence[tuple[Any, ...]] = ()) -> list[Any]:
        """Replies of one EVALSHA per (keys, args) of ``calls`` (each call's keys in one
        slot), sent in one cluster pipeline with the raw commands ``also`` (their replies
        are dropped). A NOSCRIPT reply (a restarted node, a promoted replica) loads the
        script on every primary and sends those calls again; any other error is raised."""
        if self.sha is None:
            await self.load(client)
        todo = list(range(len(calls)))
        out: list[Any] = [None] * len(calls)
        extra = list(also)
        for attempt in range(2):
            commands: list[tuple[Any, ...]] = []
            for i in todo:
                keys, args = calls[i]
                commands.append(("EVALSHA", self.sha, len(keys), *keys, *args))
            replies = await write_commands(client, [*commands, *extra])
            for reply in replies[len(todo):]:
                if isinstance(reply, Exception):
                    await call(_fail(reply))
            missing = []
            for i, reply in zip(todo, replies, strict=False):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    missing.append(i)
                elif isinstance(reply, Exception):
                    await call(_fail(reply))  # connection loss: TransientError, as elsewhere
                else:
                    out[i] = reply
            if not missing:
                break
            await self.load(client)
            todo, extra = missing, []
        return out


async def _fail(exc: Exception) -> Any:
    raise exc


async def write_commands(client: aioredis.Redis, commands: Sequence[tuple[Any, ...]],
                         raise_on_error: bool = False) -> list[Any]:
    """Replies of keyed write commands on a cluster (an error reply as its exception, unless
    ``raise_on_error``: then raised), one pipeline per primary, the primaries in parallel.

    With a replica barrier (:func:`streams.redis.client.durability`, ``wait_replicas`` > 0)
    each primary's pipeline ends with ``WAIT replicas timeout`` on the connection that sent
    its writes (WAIT counts the writes of its own connection), and the call returns only when
    every primary written to reports that many replicas holding them. Otherwise it raises
    :class:`TransientError`, and the caller retries (the scripts are idempotent): a primary
    with fewer replicas by the timeout, a connection lost (a primary killed: whatever it
    acknowledged may be missing from the replica promoted in its place), or a slot that moved
    (MOVED, ASK, TRYAGAIN, CLUSTERDOWN); the last two refresh the client's slot map. Writes are
    not redirected to another node inside the call: a write the WAIT did not cover is never
    taken as done. Without a barrier, redis-py's cluster pipeline (which follows
    redirections) sends them.
    """
    barrier = durability(client)
    if not commands:
        return []
    if barrier.replicas <= 0:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies = list(await call(pipe.execute(raise_on_error=False)))
    else:
        replies = list(await call(_with_wait(client, commands, barrier)))
    for reply in replies if raise_on_error else ():
        if isinstance(reply, Exception):
            await call(_fail(reply))  # a lost connection: TransientError
    return replies


_MOVED = (MovedError, AskError, TryAgainError, ClusterDownError, SlotNotCoveredError)
_LOST = (RedisConnectionError, RedisTimeoutError, OSError)


def routing_key(command: Sequence[Any]) -> Any:
    """The key that places ``command`` on a node: its first (``EVALSHA sha n key…``: the
    script's first key)."""
    name = str(command[0]).upper()
    return command[3] if name in ("EVALSHA", "EVAL") else command[1]


async def _with_wait(client: aioredis.Redis, commands: Sequence[tuple[Any, ...]],
                     barrier: Durability) -> list[Any]:
    """:func:`write_commands` with the replica barrier (its docstring)."""
    cluster: Any = client
    per_node: dict[str, tuple[ClusterNode, list[PipelineCommand]]] = {}
    try:
        await cluster.initialize()  # (re)reads the slot map when it was dropped
        for pos, command in enumerate(commands):
            key = routing_key(command)
            slot = key_slot(key.encode() if isinstance(key, str) else key)
            node = cluster.nodes_manager.get_node_from_slot(slot)
            per_node.setdefault(node.name, (node, []))[1].append(PipelineCommand(pos, *command))
    except RedisClusterException as exc:  # no node answered, a slot not served
        await cluster.aclose()
        raise TransientError(f"redis unavailable: {exc!r}") from exc
    waits = []
    for _, pipeline in per_node.values():
        wait = PipelineCommand(len(commands), "WAIT", barrier.replicas, barrier.timeout_ms)
        pipeline.append(wait)
        waits.append(wait)
    sent = await asyncio.gather(*(node.execute_pipeline(pipeline)
                                  for node, pipeline in per_node.values()),
                                return_exceptions=True)
    for outcome in sent:
        if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
            raise outcome  # cancelled
    lost: list[Any] = [e for e in sent if isinstance(e, Exception)]
    for _, pipeline in per_node.values():
        lost += [c.result for c in pipeline if isinstance(c.result, _LOST + _MOVED)]
    if lost:
        await cluster.aclose()  # the next call reads the slot map again
        if isinstance(lost[0], _MOVED):
            raise TransientError(f"redis slot moved: {lost[0]}")
        raise TransientError(f"redis unavailable: {lost[0]!r}")
    for (node, _), wait in zip(per_node.values(), waits, strict=True):
        confirmed: Any = wait.result
        if isinstance(confirmed, NoPermissionError):
            raise confirmed  # call(): ConfigurationError (the ACL lacks WAIT)
        if isinstance(confirmed, Exception):  # e.g. a primary demoted to a replica
            await cluster.aclose()
            raise TransientError(f"redis replicas: WAIT on {node.name}: {confirmed}")
        if int(confirmed) < barrier.replicas:
            raise TransientError(
                f"redis replicas: {node.name} confirmed {int(confirmed)} of "
                f"{barrier.replicas} within {barrier.timeout_ms} ms; batch retried (a primary "
                f"without replicas: attach one, or CHURN_REDIS__WAIT_REPLICAS=0 turns this off)")
    replies: list[Any] = [None] * len(commands)
    for _, pipeline in per_node.values():
        for sent_command in pipeline[:-1]:
            replies[sent_command.position] = sent_command.result
    return replies


class _Applies(Protocol):
    @property
    def script_source(self) -> str: ...

    def script_call(self, groups: dict[str, list[Any]]) -> tuple[list[str], bytes, bytes]: ...

    def applied(self, groups: dict[str, list[Any]], raw: Any) -> dict[str, Any]: ...

    def due_key(self, partition: int) -> str: ...


_SCRIPTS: dict[str, ClusterScript] = {}


def _script(source: str) -> ClusterScript:
    """One :class:`ClusterScript` per source text (its SHA is the same on every cluster)."""
    if (script := _SCRIPTS.get(source)) is None:
        script = _SCRIPTS[source] = ClusterScript(source)
    return script


async def apply_per_slot(store: _Applies, client: aioredis.Redis,
                         groups: dict[str, list[Any]], split: list[list[int]],
                         due: Mapping[str, tuple[int, float]] | None) -> dict[str, Any]:
    """The feature store's batch on a cluster: one script call per slot (each a batch of its
    own, so the exactly-once rule holds per customer as before) and the due-index raised by
    one ``ZADD GT`` per partition shard (each its own slot), all in one cluster pipeline: one
    pipeline per node, the nodes in parallel."""
    cids = list(groups)
    parts = [{cids[i]: groups[cids[i]] for i in group} for group in split]
    calls = []
    for part in parts:
        keys, arg, fingerprints = store.script_call(part)
        calls.append((keys, [arg, fingerprints]))
    shards: dict[int, dict[str, float]] = {}
    for cid, (partition, when) in (due or {}).items():
        shards.setdefault(partition, {})[cid] = when
    zadds = [("ZADD", store.due_key(p), "GT", *(x for cid, when in m.items()
                                                for x in (when, cid)))
             for p, m in shards.items()]
    replies = await _script(store.script_source).run_calls(client, calls, zadds)
    out: dict[str, Any] = {}
    for part, reply in zip(parts, replies, strict=True):
        out.update(store.applied(part, reply))
    return {cid: out[cid] for cid in cids}


def group_prefix(client: Any, prefix: str, group: str) -> str:
    """Head of the keys of a singleton group that one script or transaction writes together
    (``learner``, ``model``): ``<prefix>:<group>`` on one Redis (the layout as before), and
    ``<prefix>:{<group>}`` on a cluster, so the group's keys share one slot of their own.
    """
    return f"{prefix}:{{{group}}}" if is_cluster(client) else f"{prefix}:{group}"
