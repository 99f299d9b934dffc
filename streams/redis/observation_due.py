"""The learner's reads of pending snapshots (:mod:`streams.redis.observation_store`): due
candidates of many customers at once, decoding only the ones a call returns
(:meth:`~streams.redis.observation_store.RedisObservationStore.due`), and a churned customer's
whole hash (:func:`read_pending`), by its headers only when the features are not needed.

Each read names a customer and what to read of its pending hash: the slots ``lo..hi`` (as
strings), ``("*", "*")`` for the whole hash, ``("=", field)`` for one field. On one Redis it is
one ``due.lua`` call per :data:`DUE_CHUNK` customers: an HMGET of every slot in a range cost
the client more to pack (up to 64 arguments a customer, ~0.5 µs each in redis-py) than the
rest of the learner's step (profile of ``bench/bench_learner.py``, docs/learning.md). On a
Redis Cluster (one script cannot span hash slots) it is a pipelined HMGET / HGETALL per
customer, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import redis.asyncio as aioredis

from online_models.observations import Observation
from streams.redis.client import call
from streams.redis.cluster import is_cluster
from streams.redis.packed_state import SnapshotSchemas, snapshot_stub
from streams.redis.scripts import Scripts

DUE_CHUNK = 1000  # customers per due.lua call (keeps each call short)
Read = tuple[str, str, tuple[str, str]]  # (due member, customer, what to read)
# a due snapshot: (resolve time, customer, due member, slot, stored bytes, decoded or None)
Candidate = tuple[float, str, str, str, bytes, Observation | None]


#: The due index's members scored at most ARGV[1], from ARGV[2], at most ARGV[3] of them, with
#: their scores: what ZRANGEBYSCORE ... WITHSCORES LIMIT returns, as a flat list of strings
#: (redis-py turns each score of its own reply into bytes and back on a RESP3 connection).
DUE_MEMBERS_LUA = ("return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', "
                   "'LIMIT', ARGV[2], ARGV[3])")


async def due_members(client: aioredis.Redis, scripts: Scripts, script: str, key: str,
                      until: float, start: int, num: int) -> list[tuple[str, float]]:
    """``(member, score)`` of the due index ``key`` scored at most ``until`` (a page of
    ``num`` from ``start``); ``script``: the name :data:`DUE_MEMBERS_LUA` is loaded under."""
    if is_cluster(client):
        raw = await call(client.zrangebyscore(key, "-inf", until, start=start, num=num,
                                              withscores=True))
        return [(_text(m), float(score)) for m, score in raw]
    flat = await scripts.run(script, [key], [repr(float(until)), start, num])
    return [(_text(flat[j]), float(flat[j + 1])) for j in range(0, len(flat), 2)]


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


async def read_slots(client: aioredis.Redis, scripts: Scripts, script: str,
                     key: Callable[[str], str], reads: Sequence[Read]
                     ) -> list[list[tuple[str, bytes]]]:
    """The (slot field, stored snapshot) pairs each read finds, in the order of ``reads``
    (absent slots left out); ``script``: the name ``due.lua`` is loaded under."""
    out: list[list[tuple[str, bytes]]] = []
    if not is_cluster(client):
        for lo in range(0, len(reads), DUE_CHUNK):
            part = reads[lo:lo + DUE_CHUNK]
            replies = await scripts.run(script, [key(cid) for _, cid, _ in part],
                                        [x for _, _, what in part for x in what])
            out += [[(_text(flat[j]), flat[j + 1]) for j in range(0, len(flat), 2)]
                    for flat in replies]
        return out
    wanted: list[list[str] | None] = []
    async with client.pipeline(transaction=False) as pipe:
        for _, cid, (lo_, hi_) in reads:
            if lo_ == "*":
                wanted.append(None)
                pipe.hgetall(key(cid))
                continue
            fields = [hi_] if lo_ == "=" else [str(n) for n in range(int(lo_), int(hi_) + 1)]
            wanted.append(fields)
            pipe.hmget(key(cid), fields)
        replies = await call(pipe.execute())
    for names, reply in zip(wanted, replies, strict=True):
        out.append([(_text(f), v) for f, v in reply.items()] if names is None
                   else [(f, v) for f, v in zip(names, reply, strict=True) if v is not None])
    return out


async def first_due(schemas: SnapshotSchemas, due: list[Candidate], limit: int,
                    bad: list[tuple[str, str, str]]) -> list[Observation]:
    """The first ``limit`` snapshots of ``due`` in order (resolve time, customer), decoded;
    only those are (a packed snapshot's time is read from its header): the rest stay pending
    for the next call. One that does not decode goes to ``bad`` (member, customer, slot)
    and the next in order takes its place."""
    due.sort(key=lambda c: (c[0], c[1]))
    found: list[Observation] = []
    at = 0
    while len(found) < limit and at < len(due):
        part = due[at:at + limit - len(found)]
        at += len(part)
        decoded = iter(await schemas.decode([(c[1], c[4]) for c in part if c[5] is None]))
        for _, cid, m, slot, _, obs in part:
            got = obs if obs is not None else next(decoded)
            if got is None:
                bad.append((m, cid, slot))
            else:
                found.append(got)
    return found


async def read_pending(client: aioredis.Redis, scripts: Scripts, script: str,
                       schemas: SnapshotSchemas, key: Callable[[str], str],
                       customer_ids: Sequence[str], features: bool = True
                       ) -> dict[str, list[Observation]]:
    """Each customer's pending snapshots (its whole hash: :func:`read_slots`, one script
    call per :data:`DUE_CHUNK` customers — a pipelined HGETALL each cost redis-py ~50 µs of
    reply handling apiece), by time; one that does not decode is left out (and counted by
    ``schemas``).
    ``features=False``: a packed snapshot is read from its header only (``x`` empty:
    :func:`~streams.redis.packed_state.snapshot_stub`), what a churn label needs when its
    positives are learned at their horizon — ~30 snapshots a customer are not decoded."""
    if not customer_ids:
        return {}
    reads: list[Read] = [(cid, cid, ("*", "*")) for cid in customer_ids]
    replies = await read_slots(client, scripts, script, key, reads)
    items = [(cid, v) for cid, pairs in zip(customer_ids, replies, strict=True)
             for _, v in pairs]
    found: dict[str, list[Observation]] = {cid: [] for cid in customer_ids}
    stubs = [None if features else snapshot_stub(raw, cid) for cid, raw in items]
    decoded = iter(await schemas.decode(
        [item for item, stub in zip(items, stubs, strict=True) if stub is None]))
    whole = [stub if stub is not None else next(decoded) for stub in stubs]
    for (cid, _), obs in zip(items, whole, strict=True):
        if obs is not None:
            found[cid].append(obs)
    for pending in found.values():
        pending.sort(key=lambda o: o.t)
    return found
