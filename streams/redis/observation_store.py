"""Pending observations: scored snapshots waiting for their outcome (see
``online_models.observations`` for the semantics).

Redis layout::

    <prefix>:{c:<id>}:obs    hash: observation slot (int) -> packed snapshot (see
                             :func:`streams.redis.packed_state.pack_snapshot`: schema id, t,
                             score, model version, features as half floats); TTL horizon + margin
    <prefix>:obs:due         sorted set: one member per customer with pending snapshots
                             (:func:`due_member`: the id) scored by the earliest time one of
                             them resolves negative (t + horizon); older stores wrote one member
                             "<customer_id>|<slot>" per snapshot: still served and removed
    <prefix>:obs:due:n       string: how many snapshots are pending (:meth:`count`); set from
                             the due index's size when absent (a store of the older layout)
    <prefix>:obs:schema      hash: schema id (8 hex digits) -> JSON list of the feature names

Churn marks are in :mod:`streams.redis.churned`; :meth:`RedisObservationStore.record_scored`
reads and clears them in the same script when both live in the same Redis.

``record`` uses HSETNX, so at most one snapshot per customer per slot is ever kept, and
recording the same snapshot twice (a replayed batch) changes nothing. Memory per pending
observation (measured, ``bench/bench_snapshots.py``, 44 features): 173 bytes in the customer's
hash (941 when snapshots were zlib'd JSON, which still read) plus the customer's one due-index
entry shared by its snapshots (~104 bytes when it was one entry per snapshot); with a 1-day
interval and a 30-day horizon, at most 30 per active customer.

The due index holds a customer's earliest resolve time: ``record`` adds with ``ZADD LT``,
:meth:`RedisObservationStore.due` reads the hashes of the customers scored at most ``until``
and returns their snapshots that resolve by then, :meth:`~RedisObservationStore.remove`
re-scores a customer to its next pending snapshot or removes it once its hash is empty
(checking the hash again after the removal, so a snapshot the worker adds meanwhile keeps
its entry). A snapshot the worker adds meanwhile with an earlier resolve time than the
customer's others (an out-of-order event from an earlier interval) may be indexed at the
later time: resolved late, not lost. ``count`` overstates by snapshots whose hash expired
unresolved (the learner away longer than the TTL margin).

Feature schemas (:class:`~streams.redis.packed_state.SnapshotSchemas`): a packed snapshot
names its features by a 4-byte id of their names in order; the writer puts the names in
``obs:schema`` (HSETNX) before the first snapshot that uses them and again every minute,
readers cache them for good. A snapshot
whose schema cannot be found or whose bytes do not decode is logged, counted
(``undecodable``) and dropped from the due index, never raised into the learner's loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from online_models.observations import LabelPolicy, Observation
from streams.redis.churned import ChurnedCustomers, RedisChurnedCustomers
from streams.redis.client import call
from streams.redis.cluster import is_cluster, write_commands
from streams.redis.observation_base import (
    InMemoryObservationStore,
    ObservationStore,
    ObserveOutcome,
    ScoredSnapshot,
    due_member,
    member,
    parse_member,
    pending_of,
    record_scored_generic,
)
from streams.redis.observation_due import (
    DUE_MEMBERS_LUA,
    Candidate,
    due_members,
    first_due,
    read_pending,
    read_slots,
)
from streams.redis.packed_state import (
    SnapshotSchemas,
    decode_observation,
    encode_observation,
    quantized,
    snapshot_time,
)
from streams.redis.scripts import Scripts

__all__ = ["InMemoryObservationStore", "ObservationStore", "ObserveOutcome",
           "RedisObservationStore", "ScoredSnapshot", "decode_observation", "due_member",
           "encode_observation", "member", "parse_member", "pending_of", "quantized",
           "record_scored_generic"]

TTL_MARGIN_S = 7 * 86400
LUA_OBSERVE = Path(__file__).with_name("lua") / "observe.lua"
LUA_UNOBSERVE = Path(__file__).with_name("lua") / "unobserve.lua"
LUA_DUE = Path(__file__).with_name("lua") / "due.lua"
OBSERVE, UNOBSERVE, DUE, DUE_MEMBERS = "observe", "unobserve", "due", "due_members"
WIDE_SLOTS = 64  # due() reads a customer's whole hash past this many candidate slots
UNOBSERVE_CHUNK = 500  # customers per script call (keeps each call short)


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisObservationStore:
    def __init__(self, client: aioredis.Redis, prefix: str, policy: LabelPolicy) -> None:
        self._client = client
        self._prefix = prefix
        self._policy = policy
        self.schemas = SnapshotSchemas(client, f"{prefix}:obs:schema")
        self._due_key = f"{prefix}:obs:due"
        self._count_key = f"{prefix}:obs:due:n"
        self._counted = False
        self._churned_key = f"{prefix}:churned"
        self._ttl = int(policy.horizon_s + TTL_MARGIN_S)
        self._scripts = Scripts(client, {OBSERVE: LUA_OBSERVE.read_text(),
                                         UNOBSERVE: LUA_UNOBSERVE.read_text(),
                                         DUE: LUA_DUE.read_text(),
                                         DUE_MEMBERS: DUE_MEMBERS_LUA})

    def key(self, customer_id: str) -> str:
        return f"{self._prefix}:{{c:{customer_id}}}:obs"

    async def record(self, observations: Sequence[Observation]) -> int:
        if not observations:
            return 0
        payloads = await self.schemas.encode(observations)
        if is_cluster(self._client):  # per node, with the replica barrier (cluster.py)
            return await self._record_on_cluster(observations, payloads)
        async with self._client.pipeline(transaction=False) as pipe:
            for obs, payload in zip(observations, payloads, strict=True):
                key = self.key(obs.customer_id)
                pipe.hsetnx(key, str(self._policy.slot(obs.t)), payload)
                pipe.expire(key, self._ttl)
            replies = await call(pipe.execute())
        new = [obs for obs, added in zip(observations, replies[::2], strict=True) if added]
        if new:
            await self._ensure_count()
            earliest: dict[str, float] = {}
            for o in new:
                m, at = due_member(o.customer_id), self._policy.due(o)
                earliest[m] = min(at, earliest.get(m, at))
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.zadd(self._due_key, earliest, lt=True)
                pipe.incrby(self._count_key, len(new))
                await call(pipe.execute())
        return len(new)

    async def _record_on_cluster(self, observations: Sequence[Observation],
                                 payloads: Sequence[bytes]) -> int:
        """:meth:`record` through :func:`~streams.redis.cluster.write_commands`: each
        primary confirms its replicas hold the snapshots before the worker commits. Every
        snapshot of the call is indexed (``ZADD LT`` changes nothing for one indexed already):
        a call retried after its snapshots were written but not indexed indexes them."""
        commands: list[tuple[Any, ...]] = []
        for obs, payload in zip(observations, payloads, strict=True):
            key = self.key(obs.customer_id)
            commands += [("HSETNX", key, str(self._policy.slot(obs.t)), payload),
                         ("EXPIRE", key, self._ttl)]
        replies = await write_commands(self._client, commands, raise_on_error=True)
        new = sum(1 for added in replies[::2] if int(added))
        await self._ensure_count()
        earliest: dict[str, float] = {}
        for o in observations:
            m, at = due_member(o.customer_id), self._policy.due(o)
            earliest[m] = min(at, earliest.get(m, at))
        index: list[tuple[Any, ...]] = [
            ("ZADD", self._due_key, "LT", *(x for m, at in earliest.items() for x in (at, m)))]
        if new:
            index.append(("INCRBY", self._count_key, new))
        await write_commands(self._client, index, raise_on_error=True)
        return new

    async def warm(self, names: tuple[str, ...]) -> None:
        """The worker's warm-up, reading only: the script loaded, the count and the schema
        ``names`` found when present (else the first batch writes them)."""
        if not is_cluster(self._client):
            await self._scripts.preload(OBSERVE)
            self._counted = self._counted or bool(await call(self._client.exists(self._count_key)))
            await self.schemas.warm(names)

    async def _ensure_count(self) -> None:
        """The snapshot count starts as the due index's size when a store of the older
        layout (one member per snapshot, no count) is met; once per process."""
        if self._counted:
            return
        if not await call(self._client.exists(self._count_key)):
            size = int(await call(self._client.zcard(self._due_key)))
            await call(self._client.set(self._count_key, size, nx=True))
        self._counted = True

    async def pending(self, customer_id: str) -> list[Observation]:
        return (await self.pending_many([customer_id]))[customer_id]

    async def pending_stubs(self, customer_ids: Sequence[str]) -> dict[str, list[Observation]]:
        """:meth:`pending_many` without the features (the learner's churn labels)."""
        return await self.pending_many(customer_ids, features=False)

    async def pending_many(self, customer_ids: Sequence[str], features: bool = True
                           ) -> dict[str, list[Observation]]:
        """Each customer's pending snapshots by time; ``features=False``: without their
        features (:func:`~streams.redis.observation_due.read_pending`)."""
        return await read_pending(self._client, self._scripts, DUE, self.schemas, self.key,
                                  customer_ids, features)

    async def due(self, until: float, limit: int) -> list[Observation]:
        due: list[Candidate] = []  # snapshots due by ``until``, decoded when needed
        seen: set[tuple[str, str]] = set()
        stale: list[str] = []  # members whose snapshots are gone (expired or forgotten)
        bad: list[tuple[str, str, str]] = []  # undecodable: dropped, not retried forever
        ahead: dict[str, float] = {}  # customers scored below their earliest snapshot
        start = 0
        while True:  # pages of members, until ``limit`` snapshots or the index is read
            members = await due_members(self._client, self._scripts, DUE_MEMBERS,
                                        self._due_key, until, start, limit)
            await self._due_page(members, until, due, seen, stale, bad, ahead)
            start += len(members)
            if len(members) < limit or len(due) >= limit:
                break
        found = await first_due(self.schemas, due, limit, bad)
        if stale or bad or ahead:
            await self._drop(stale, bad, ahead)
        return found

    async def _due_page(self, members: list[tuple[str, float]], until: float,
                        due: list[Candidate], seen: set[tuple[str, str]], stale: list[str],
                        bad: list[tuple[str, str, str]], ahead: dict[str, float]) -> None:
        """Read one page of the due index (members and scores). A customer's member reads
        the slots from its score's (its earliest snapshot's) to the last whose interval could
        have resolved by ``until`` (a snapshot resolves at least ``horizon`` after its interval
        began): usually one field; the whole hash past ``WIDE_SLOTS``. An older member reads
        its one snapshot. A customer with nothing read is re-scored (``ahead``) or dropped.
        Snapshots due by ``until`` go to ``due``; an older (JSON) one is decoded to know."""
        if not members:
            return
        policy = self._policy
        reads: list[tuple[str, str, tuple[str, str]]] = []  # member, customer, what to read
        hi = math.floor((until - policy.horizon_s) / policy.interval_s)
        for m, score in members:
            cid, slot = parse_member(m)
            if slot is not None:
                reads.append((m, cid, ("=", slot)))
                continue
            lo = math.floor((score - policy.horizon_s) / policy.interval_s) - 1
            reads.append((m, cid, ("*", "*") if hi - lo >= WIDE_SLOTS else (str(lo), str(hi))))
        stored: list[tuple[str, str, str, bytes]] = []  # member, customer, slot, bytes
        found_pairs = await read_slots(self._client, self._scripts, DUE, self.key, reads)
        for (m, cid, _), pairs in zip(reads, found_pairs, strict=True):
            if not pairs:
                stale.append(m)  # an older member: its snapshot is gone; else re-scored
                continue
            stored += [(m, cid, f, v) for f, v in pairs]
        times = [snapshot_time(raw) for _, _, _, raw in stored]
        older = [(cid, raw) for (_, cid, _, raw), t in zip(stored, times, strict=True)
                 if t is None]
        decoded = iter(await self.schemas.decode(older) if older else [])
        horizon = policy.horizon_s
        for (m, cid, slot, raw), t in zip(stored, times, strict=True):
            obs = None
            if t is None:
                obs = next(decoded)
                if obs is None:
                    bad.append((m, cid, slot))
                    continue
                t = obs.t
            if t + horizon <= until and (cid, slot) not in seen:
                seen.add((cid, slot))  # read through an older member and its customer's
                due.append((t + horizon, cid, m, slot, raw, obs))
        due_now = {c[1] for c in due}
        ahead.update({m: 0.0 for m, cid, what in reads  # a customer's member: not "="
                      if what[0] != "=" and cid not in due_now})

    async def _drop(self, stale: list[str], bad: list[tuple[str, str, str]],
                    ahead: dict[str, float]) -> None:
        """Drop what :meth:`due` found gone or undecodable; re-score the customers it read
        nothing due of (their member removed when their hash is empty)."""
        older = [m for m in stale if parse_member(m)[1] is not None]
        older += [m for m, _, _ in bad if parse_member(m)[1] is not None]
        gone = len(bad) + sum(1 for m in stale if parse_member(m)[1] is not None)
        if gone:
            await self._ensure_count()
        async with self._client.pipeline(transaction=False) as pipe:
            if older:
                pipe.zrem(self._due_key, *older)
            for _, cid, slot in bad:
                pipe.hdel(self.key(cid), slot)
            if gone:
                pipe.decrby(self._count_key, gone)
            if older or bad:
                await call(pipe.execute())
        customers = {parse_member(m)[0] for m in [*stale, *ahead] if parse_member(m)[1] is None}
        customers |= {cid for m, cid, _ in bad if parse_member(m)[1] is None}
        await self._rescore(customers)

    async def remove(self, observations: Iterable[Observation]) -> None:
        obs = list(observations)
        if not obs:
            return
        await self._ensure_count()
        if not is_cluster(self._client):  # one script per chunk: atomic, one round trip
            slots: dict[str, list[str]] = {}
            for o in obs:
                slots.setdefault(o.customer_id, []).append(str(self._policy.slot(o.t)))
            cids = list(slots)
            for lo in range(0, len(cids), UNOBSERVE_CHUNK):
                part = cids[lo:lo + UNOBSERVE_CHUNK]
                items = orjson.dumps([[due_member(cid), slots[cid], cid] for cid in part])
                await self._scripts.run(UNOBSERVE, [self._due_key, self._count_key,
                                                    *(self.key(cid) for cid in part)],
                                        [self._policy.horizon_s, self._policy.interval_s,
                                         items])
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for o in obs:
                pipe.hdel(self.key(o.customer_id), str(self._policy.slot(o.t)))
            pipe.zrem(self._due_key, *(member(o, self._policy) for o in obs))  # older layout
            replies = await call(pipe.execute())
        gone = sum(int(r) for r in replies[:-1])
        if gone:
            await call(self._client.decrby(self._count_key, gone))
        await self._rescore({o.customer_id for o in obs})

    async def _rescore(self, customer_ids: set[str]) -> None:
        """Each customer's due-index member scored by its earliest pending snapshot (the one
        of the lowest slot: only it is decoded), or removed when it has none; a hash found
        empty is read again after the removal (the worker writes the hash before the index:
        a snapshot added meanwhile is re-indexed)."""
        policy = self._policy
        cids = sorted(customer_ids)
        for _ in range(3):  # the hash read again once or twice at most
            if not cids:
                return
            async with self._client.pipeline(transaction=False) as pipe:
                for cid in cids:
                    pipe.hkeys(self.key(cid))
                slots = await call(pipe.execute())
            lowest = {cid: min(int(f) for f in fs) for cid, fs in zip(cids, slots, strict=True)
                      if fs}
            async with self._client.pipeline(transaction=False) as pipe:
                for cid, slot in lowest.items():
                    pipe.hget(self.key(cid), str(slot))
                raws = await call(pipe.execute())
            items = [(cid, raw) for cid, raw in zip(lowest, raws, strict=True) if raw]
            decoded = dict(zip([cid for cid, _ in items], await self.schemas.decode(items),
                               strict=True))
            earliest = {due_member(cid): (policy.due(o) if (o := decoded.get(cid)) else
                                          slot * policy.interval_s + policy.horizon_s)
                        for cid, slot in lowest.items()}
            empty = [cid for cid in cids if cid not in lowest]
            async with self._client.pipeline(transaction=False) as pipe:
                if earliest:
                    pipe.zadd(self._due_key, earliest)
                if empty:
                    pipe.zrem(self._due_key, *(due_member(cid) for cid in empty))
                for cid in empty:
                    pipe.hlen(self.key(cid))
                replies = await call(pipe.execute())
            lengths = replies[len(replies) - len(empty):] if empty else []
            cids = [cid for cid, n in zip(empty, lengths, strict=True) if int(n)]

    async def count(self) -> int:
        await self._ensure_count()
        return max(0, int(await call(self._client.get(self._count_key)) or 0))

    async def record_scored(self, items: Sequence[ScoredSnapshot],
                            churned: ChurnedCustomers | None) -> ObserveOutcome:
        if (not isinstance(churned, RedisChurnedCustomers) or churned.key != self._churned_key
                or is_cluster(self._client)):  # one script would span slots: plain commands
            return await record_scored_generic(self, items, churned)
        outcome = ObserveOutcome()
        if not items:
            return outcome
        policy = self._policy
        await self._ensure_count()
        keys = [self._churned_key, self._due_key, self._count_key]
        packed = iter(await self.schemas.encode([i.observation for i in items
                                                  if i.observation is not None]))
        payloads: list[bytes] = []
        meta: list[list[Any]] = []
        for item in items:
            obs = item.observation
            if obs is None:
                meta.append([item.customer_id, item.newest_event, 0])
                continue
            keys.append(self.key(item.customer_id))
            payloads.append(next(packed))
            meta.append([item.customer_id, item.newest_event, len(payloads),
                         policy.slot(obs.t), policy.due(obs), due_member(item.customer_id)])
        args: list[Any] = [self._ttl, orjson.dumps(meta), *payloads]
        codes = await self._scripts.run(OBSERVE, keys, args)
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
