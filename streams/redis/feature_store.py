"""Per-customer feature state and the due-index: the ports, the Redis adapter, an in-memory twin.

Both implementations apply the same update (:func:`online_models.features.apply_event`) with
the same exactly-once rule, and the contract suite (``tests/feature_store_contract.py``) runs
against both. The worker wraps the Redis one in a write-behind cache of its customers' states
(:mod:`streams.redis.feature_cache`, same contract, same Redis content).

Exactly-once, and its bound
---------------------------
Per customer, a ring remembers the last ``dedup_ids`` applied events (a 64-bit fingerprint of
the event id and the event time in ms; 14 bytes each in Redis); an event found in the ring is a
duplicate. When an entry leaves the ring, ``dfloor`` becomes the largest event time that ever
left it, and events at or before ``dfloor`` are skipped as *late*: they can no longer be
checked. Every applied event later than ``dfloor`` is still in the ring, so re-applying events
that were applied already (a producer retry, a replay after a crash) never changes the state,
whatever the ring size.

The ring bounds memory (``dedup_ids`` × 14 bytes per customer) and therefore how much disorder
is tolerated: an event is applied (once) unless, when it arrives, an event of the same customer
applied ``dedup_ids`` or more applications earlier has the same or a later time. Streams whose
per-customer disorder stays within that bound give the same features in any order; events
beyond it are counted as ``late`` and dropped (never counted twice).

Poison isolation
----------------
An event whose time is not finite or beyond what the ring can store (±2^47 ms, about year
6429; code ``bad_timestamp``), whose value is not finite (``bad_value``), or that would make a
field of the state non-finite (``overflow``) is refused on its own: the rest of the batch is
applied, nothing of the refused event is written or remembered (it is checked before any state
changes), and :func:`rejected_positions` tells the caller which events to dead-letter. A
customer whose stored state cannot be read or encoded (``bad_state``) has its events refused
and its state left as it is; other customers of the batch are applied. The decoder
(:mod:`streams.contracts`) bounds time and values long before this; these checks keep the store
sound for any caller.

Due-index
---------
Per Kafka partition of the events topic, a sorted set of customer → next re-score time (event
time). The event path raises it to ``newest event time + rescore_after_s`` in the same pipeline
round trip as the batch's script (``ZADD GT``); the sweeper (``streams.worker.sweeper``) takes the
customers due before its clock and moves them on (``ZADD XX GT``, so a newer event always wins).

Redis layout (every key of a customer carries the hash tag ``{c:<id>}``, so all of a customer's
keys share one Redis Cluster slot and the script touches only such keys; the due-index shards
have their own tag, one slot per partition, and are written by plain commands beside the
script)::

    <prefix>:{c:<id>}:f      hash, TTL = retention: "s" the feature state and the dedup ring
                             ("ids") as one MessagePack map (exact doubles, one value to read
                             and write), "n" the event count as text (for people and tools)
    <prefix>:due:{p<n>}      sorted set: customer id -> next re-score time, events partition n
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis

from online_models.features import DAY_S, FeatureSpec, apply_event, catalogue
from streams.contracts import CustomerEvent
from streams.redis.client import call, durability
from streams.redis.cluster import apply_per_slot, is_cluster, slot_groups
from streams.redis.erasure import RedisErasure, erase_customer
from streams.redis.packed_state import unpack_state
from streams.redis.refusals import REFUSALS as REFUSALS  # re-exported
from streams.redis.refusals import event_refusal, wire_ms
from streams.redis.refusals import rejected_positions as rejected_positions
from streams.redis.scripts import Scripts
from streams.settings import FeatureSettings

LUA_APPLY_EVENTS = Path(__file__).with_name("lua") / "apply_events.lua"
APPLY = "apply_events"
STATE_FIELD = "s"

DueUpdates = Mapping[str, tuple[int, float]]
"""Customer id → (events partition, due time): raise the customer's due time to at least this."""


@dataclass(frozen=True, slots=True)
class AppliedState:
    """A customer's state after a batch, and what the batch did to it."""

    state: dict[str, float]
    applied: int
    late: int
    rejected: tuple[tuple[int, str], ...] = ()
    """Events refused (position among this customer's events of the call, reason code)."""
    last: CustomerEvent | None = None
    """The event of this call the state ends with (the last one applied, or a duplicate of it
    that was applied before), or None when the state ends with an event of an earlier call: a
    redelivered batch whose customers were also advanced by the batches after it, or late
    events only. The worker names a score after this event, so a score id always carries the
    same state, however a redelivery splits the batches."""


@dataclass(frozen=True, slots=True)
class DueCustomer:
    """A customer whose re-score time has come, with its current state."""

    customer_id: str
    due: float
    state: dict[str, float]


class FeatureStore(Protocol):
    """Applies batches of events and returns the new state of every customer touched."""

    @property
    def spec(self) -> FeatureSpec: ...

    async def apply(self, events: Sequence[CustomerEvent],
                    due: DueUpdates | None = None) -> dict[str, AppliedState]: ...

    async def get(self, customer_id: str) -> dict[str, float]: ...

    async def features(self, customer_id: str, now: float) -> dict[str, float]: ...

    async def forget(self, customer_id: str) -> int: ...


class DueIndex(Protocol):
    """When to re-score customers that have no new events, per events partition."""

    async def due(self, partition: int, until: float, limit: int) -> list[DueCustomer]: ...

    async def reschedule(self, partition: int, items: Sequence[tuple[str, float]]) -> None: ...


def group_by_customer(events: Iterable[CustomerEvent]) -> dict[str, list[CustomerEvent]]:
    groups: dict[str, list[CustomerEvent]] = defaultdict(list)
    for event in events:
        groups[event.customer_id].append(event)
    return groups


def due_shards(due: DueUpdates | None) -> dict[int, dict[str, float]]:
    """Due-index updates grouped by partition shard: one ``ZADD GT`` each.

    >>> due_shards({"a": (0, 5.0), "b": (1, 6.0), "c": (0, 7.0)})
    {0: {'a': 5.0, 'c': 7.0}, 1: {'b': 6.0}}
    """
    shards: dict[int, dict[str, float]] = defaultdict(dict)
    for cid, (partition, when) in (due or {}).items():
        shards[partition][cid] = when
    return dict(shards)


def fingerprint(event_id: str) -> str:
    """16 hex digits of SHA-1: the id as the dedup ring stores it.

    >>> fingerprint("e-1")
    '5ae54a43a6014f7d'
    >>> len({fingerprint(f"e-{i}") for i in range(10_000)})
    10000
    """
    return hashlib.sha1(event_id.encode(), usedforsecurity=False).hexdigest()[:16]


def fingerprint_bytes(event_id: str) -> bytes:
    """The same 64 bits as :func:`fingerprint`, as the Redis ring stores them.

    >>> fingerprint_bytes("e-1").hex() == fingerprint("e-1")
    True
    """
    return hashlib.sha1(event_id.encode(), usedforsecurity=False).digest()[:8]


def ts_ms(ts: float) -> int:
    return round(ts * 1000)


class InMemoryFeatureStore:
    """The same semantics as :class:`RedisFeatureStore`, in dicts (tests, backtests).

    No retention TTL: nothing expires by itself here.
    """

    def __init__(self, settings: FeatureSettings) -> None:
        self._settings = settings
        self._spec = settings.spec
        self._states: dict[str, dict[str, float]] = {}
        self._rings: dict[str, deque[tuple[str, int]]] = {}
        self._due: dict[int, dict[str, float]] = defaultdict(dict)

    @property
    def spec(self) -> FeatureSpec:
        return self._spec

    async def apply(self, events: Sequence[CustomerEvent],
                    due: DueUpdates | None = None) -> dict[str, AppliedState]:
        out = {cid: self._apply_one(cid, evs) for cid, evs in group_by_customer(events).items()}
        for cid, (partition, when) in (due or {}).items():
            shard = self._due[partition]
            shard[cid] = max(when, shard.get(cid, when))
        return out

    async def get(self, customer_id: str) -> dict[str, float]:
        return dict(self._states.get(customer_id, {}))

    async def features(self, customer_id: str, now: float) -> dict[str, float]:
        return catalogue(await self.get(customer_id), now, self._spec)

    async def forget(self, customer_id: str) -> int:
        removed = int(self._states.pop(customer_id, None) is not None)
        self._rings.pop(customer_id, None)
        for shard in self._due.values():
            removed += int(shard.pop(customer_id, None) is not None)
        return removed

    async def due(self, partition: int, until: float, limit: int) -> list[DueCustomer]:
        shard = self._due[partition]
        ready = sorted((when, cid) for cid, when in shard.items() if when <= until)[:limit]
        out = []
        for when, cid in ready:
            state = self._states.get(cid)
            if state:
                out.append(DueCustomer(cid, when, dict(state)))
            else:
                del shard[cid]
        return out

    async def reschedule(self, partition: int, items: Sequence[tuple[str, float]]) -> None:
        shard = self._due[partition]
        for cid, when in items:
            if cid in shard and when > shard[cid]:
                shard[cid] = when

    def due_entries(self, partition: int) -> dict[str, float]:
        """The due-index shard of a partition (tests)."""
        return dict(self._due[partition])

    def _apply_one(self, cid: str, events: list[CustomerEvent]) -> AppliedState:
        ring_size, spec = self._settings.dedup_ids, self._spec
        state = self._states.get(cid, {})
        ring = self._rings.setdefault(cid, deque())
        applied = late = 0
        rejected: list[tuple[int, str]] = []
        last: CustomerEvent | None = None
        for pos, ev in enumerate(events):
            refusal = event_refusal(ev.ts, ev.value)
            if refusal is not None:
                rejected.append((pos, refusal))
                continue
            fp, ms = fingerprint(ev.event_id), ts_ms(ev.ts)
            floor = state.get("dfloor")
            if floor is not None and ms <= floor:
                late += 1
            elif any(fp == seen for seen, _ in ring):
                if ring[-1][0] == fp:
                    last = ev
            else:
                new = apply_event(state, ev.event_type, ev.ts, ev.value, spec)
                if not all(map(math.isfinite, new.values())):
                    rejected.append((pos, "overflow"))
                    continue
                ring.append((fp, ms))
                applied += 1
                last = ev
                if len(ring) > ring_size:
                    gone = ring.popleft()[1]
                    if floor is None or gone > floor:
                        new["dfloor"] = float(gone)
                state = new
        if state:
            self._states[cid] = state
        return AppliedState(dict(state), applied, late, tuple(rejected), last)


class RedisFeatureStore:
    """Feature state in Redis: one Lua call per batch, due-index in the same round trip."""

    def __init__(self, client: aioredis.Redis, settings: FeatureSettings, prefix: str) -> None:
        self._client = client
        self._settings = settings
        self._spec = settings.spec
        self._prefix = prefix
        self._source = LUA_APPLY_EVENTS.read_text()
        self._scripts = Scripts(client, {APPLY: self._source})
        self._config: dict[str, Any] = {
            "max_types": settings.max_event_types,
            "ring": settings.dedup_ids,
            "ttl_ms": round(settings.retention_days * DAY_S * 1000),
            "hl": [[name, h * DAY_S] for name, h in
                   zip(self._spec.half_life_names, self._spec.half_lives_days, strict=True)],
        }

    @property
    def spec(self) -> FeatureSpec:
        return self._spec

    def feature_key(self, customer_id: str) -> str:
        return f"{self._prefix}:{{c:{customer_id}}}:f"

    def due_key(self, partition: int) -> str:
        return f"{self._prefix}:due:{{p{partition}}}"

    async def get(self, customer_id: str) -> dict[str, float]:
        return unpack_state(await call(
            self._client.hget(self.feature_key(customer_id), STATE_FIELD)))

    async def features(self, customer_id: str, now: float) -> dict[str, float]:
        return catalogue(await self.get(customer_id), now, self._spec)

    async def apply(self, events: Sequence[CustomerEvent],
                    due: DueUpdates | None = None) -> dict[str, AppliedState]:
        if not events:
            return {}
        groups = group_by_customer(events)
        if is_cluster(self._client):
            split = slot_groups([self.feature_key(cid) for cid in groups])
            if due or len(split) > 1 or durability(self._client).replicas:  # WAIT: cluster.py
                return await apply_per_slot(self, self._client, groups, split, due)
        keys, arg, fingerprints = self.script_call(groups)
        zadds = [(self.due_key(p), mapping) for p, mapping in due_shards(due).items()]
        return self.applied(groups, await self._scripts.run(APPLY, keys, [arg, fingerprints],
                                                            zadds))

    @property
    def script_source(self) -> str:
        return self._source

    def script_call(self, groups: dict[str, list[CustomerEvent]]
                    ) -> tuple[list[str], bytes, bytes]:
        """KEYS and the two ARGV of one ``apply_events.lua`` call for these customers."""
        request = dict(self._config)
        request["customers"] = [
            [(e.event_type, e.ts, wire_ms(e.ts), False if e.value is None else e.value)
             for e in evs]
            for evs in groups.values()
        ]
        fingerprints = b"".join(fingerprint_bytes(e.event_id)
                                for evs in groups.values() for e in evs)
        return ([self.feature_key(cid) for cid in groups], orjson.dumps(request),
                fingerprints)

    @staticmethod
    def applied(groups: dict[str, list[CustomerEvent]], raw: Any) -> dict[str, AppliedState]:
        """The reply of :meth:`script_call`'s call, per customer."""
        reply = orjson.loads(raw)
        return {cid: AppliedState(state or {}, applied, late,
                                  tuple((i - 1, code) for i, code in rejected or ()),
                                  groups[cid][last - 1] if last else None)
                for cid, (applied, late, state, rejected, last) in zip(groups, reply,
                                                                       strict=True)}

    async def due(self, partition: int, until: float, limit: int) -> list[DueCustomer]:
        key = self.due_key(partition)
        entries = await call(self._client.zrange(
            key, "-inf", until, byscore=True, offset=0, num=limit, withscores=True))
        if not entries:
            return []
        cids = [_text(member) for member, _ in entries]
        pipe = self._client.pipeline(transaction=False)
        for cid in cids:
            pipe.hget(self.feature_key(cid), STATE_FIELD)
        states = await call(pipe.execute())
        out, gone = [], []
        for cid, (_, when), raw in zip(cids, entries, states, strict=True):
            if raw:
                out.append(DueCustomer(cid, float(when), unpack_state(raw)))
            else:
                gone.append(cid)  # expired (retention) or erased
        if gone:
            await call(self._client.zrem(key, *gone))
        return out

    async def reschedule(self, partition: int, items: Sequence[tuple[str, float]]) -> None:
        if items:
            mapping = {cid: when for cid, when in items}
            await call(self._client.zadd(self.due_key(partition), mapping, xx=True,
                                               gt=True))

    async def forget(self, customer_id: str) -> int:
        """Delete every key of the customer and its index entries, matched exactly
        (:func:`streams.redis.erasure.erase_customer`; ``churnpulse forget`` does more)."""
        erased: RedisErasure = await call(erase_customer(self._client, self._prefix,
                                                         customer_id))
        return erased.total


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
