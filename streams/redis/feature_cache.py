"""A write-behind cache of feature states in the worker, over the Redis feature store.

The worker owns its partitions' customers (Kafka keys by customer id, one writer per
partition), so it can keep their states in memory and let Redis do less: instead of running
the feature update in Lua for every event (``apply_events.lua``, 27–39 µs of Redis CPU per
event), :class:`CachedFeatureStore` applies the batch in Python — the same
:func:`~online_models.features.apply_event` and the same exactly-once ring, byte for byte —
and writes each changed customer back once per batch, in one script call
(``lua/store_states.lua``) in the same round trip as the due-index, before the caller
acknowledges the batch. Redis stays the store of record and the serving store: what it holds
after a batch is what ``apply_events.lua`` would have written (same MessagePack state, same
ring), so a worker killed at any point recovers exactly as before, from Redis.

How staleness is ruled out
--------------------------
A state is loaded from Redis the first time a customer is seen (``HMGET s n``: misses of a
batch in one round trip) and kept with the event count ``n`` it was read with. The write-back
is a compare-and-set on ``n``: a customer whose stored count is no longer the one the cache read
(another worker applied events after a rebalance, the customer was erased, a write whose reply
was lost) is not written; the cache forgets it and its events of the batch go through
``apply_events.lua`` instead, which deduplicates against the stored ring — so the result is
exactly what the plain store gives. ``n`` grows with every applied event and a missing key
reads as ``''``. The cache changes only after Redis confirmed a write: a batch retried after a
failed call starts again from the same cached states.

Customers whose stored state does not decode (``bad_state``) go through the script as well
(which refuses them, as before). On Redis Cluster the cache is bypassed (the plain store splits
its calls by slot). The cache is cleared when partitions are revoked
(:meth:`CachedFeatureStore.invalidate`) and when it holds more than ``max_customers``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from pathlib import Path

import msgpack  # type: ignore[import-untyped]
import redis.asyncio as aioredis

from online_models.features import FeatureSpec, apply_event
from streams.contracts import CustomerEvent
from streams.redis.cluster import is_cluster
from streams.redis.feature_store import (
    AppliedState,
    DueCustomer,
    DueUpdates,
    RedisFeatureStore,
    due_shards,
    fingerprint_bytes,
    group_by_customer,
)
from streams.redis.refusals import RING_MS_LIMIT, event_refusal, wire_ms
from streams.redis.scripts import Scripts
from streams.settings import FeatureSettings

LUA_STORE_STATES = Path(__file__).with_name("lua") / "store_states.lua"
LUA_LOAD_STATES = Path(__file__).with_name("lua") / "load_states.lua"
MAX_CUSTOMERS = 250_000
"""Default bound of the cache: a customer's state and ring take 3.8 kB in the worker at 35
fields and a full ring of 32 (tracemalloc, 2,000 customers), so ~1 GB at this bound."""

WIDTH = 14  # ring entry: 8 bytes fingerprint + 6 bytes big-endian ms + RING_MS_LIMIT

Entry = tuple[dict[str, float], bytes, bytes]
"""A cached customer: its state (without the ring), its ring, the ``n`` it was read with."""


class BadState(ValueError):
    """A stored state that does not decode to finite numbers."""


def decode_stored(blob: bytes | None) -> tuple[dict[str, float], bytes]:
    """A stored ``s`` field as (state, ring); raises :class:`BadState` when it is not one.

    >>> decode_stored(None)
    ({}, b'')
    >>> decode_stored(encode_stored({"n": 2.0, "r": 0.5}, b"x" * 14))
    ({'n': 2.0, 'r': 0.5}, b'xxxxxxxxxxxxxx')
    """
    if not blob:
        return {}, b""
    try:
        raw = msgpack.unpackb(blob, raw=True, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise BadState(str(exc)) from exc
    if isinstance(raw, list) and not raw:  # cmsgpack writes an empty table as an array
        return {}, b""
    if not isinstance(raw, dict):
        raise BadState(f"not a map: {type(raw).__name__}")
    state: dict[str, float] = {}
    ring = b""
    for key, value in raw.items():
        name = key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else str(key)
        if name == "ids":
            if not isinstance(value, bytes):
                raise BadState("ring is not a string")
            ring = value
        elif isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise BadState(f"field {name!r} is not a finite number")
        else:
            state[name] = float(value)
    return state, ring


def encode_stored(state: dict[str, float], ring: bytes,
                  packer: msgpack.Packer | None = None) -> bytes:
    """The ``s`` field for a state and its ring: a MessagePack map that Lua's ``cmsgpack``
    reads (doubles as float64, the ring as a string). ``packer``: a reusable
    ``msgpack.Packer(use_bin_type=False)`` of the caller (one per store: ``packb`` builds a
    new one per call), used from one thread at a time."""
    if packer is None:
        packer = msgpack.Packer(use_bin_type=False)
    out: bytes = packer.pack({**state, "ids": ring})
    return out


def count_text(n: float) -> bytes:
    """The ``n`` field as ``apply_events.lua`` writes it.

    >>> count_text(12.0), count_text(0.5)
    (b'12', b'0.5')
    """
    if n == math.floor(n) and -1e15 < n < 1e15:
        return b"%d" % n
    return b"%.17g" % n


def in_ring(ring: bytes, fp: bytes) -> bool:
    """Whether fingerprint ``fp`` starts an entry of ``ring`` (the Lua script's search)."""
    start = 0
    while True:
        pos = ring.find(fp, start)
        if pos < 0:
            return False
        if pos % WIDTH == 0:
            return True
        start = pos + 1


def apply_cached(state: dict[str, float], ring: bytes, events: Sequence[CustomerEvent],
                 ring_size: int, spec: FeatureSpec
                 ) -> tuple[dict[str, float], bytes, AppliedState]:
    """One customer's events on (state, ring): what ``apply_events.lua``'s ``run`` does."""
    applied = late = 0
    rejected: list[tuple[int, str]] = []
    last: CustomerEvent | None = None
    limit = ring_size * WIDTH
    for pos, ev in enumerate(events):
        refusal = event_refusal(ev.ts, ev.value)
        if refusal is not None:
            rejected.append((pos, refusal))
            continue
        ms = wire_ms(ev.ts)
        assert ms is not None  # event_refusal checked it
        floor = state.get("dfloor")
        if floor is not None and ms <= floor:
            late += 1
            continue
        fp = fingerprint_bytes(ev.event_id)
        if in_ring(ring, fp):
            if ring[-WIDTH:-WIDTH + 8] == fp:
                last = ev
            continue
        new = apply_event(state, ev.event_type, ev.ts, ev.value, spec)
        # any non-finite field makes the sum non-finite; a finite sum proves them all finite
        if not math.isfinite(sum(new.values())) and not all(map(math.isfinite, new.values())):
            rejected.append((pos, "overflow"))
            continue
        applied += 1
        last = ev
        ring += fp + (ms + RING_MS_LIMIT).to_bytes(6, "big")
        if len(ring) > limit:
            gone = int.from_bytes(ring[8:14], "big") - RING_MS_LIMIT
            ring = ring[WIDTH:]
            if floor is None or gone > floor:
                new["dfloor"] = float(gone)
        state = new
    return state, ring, AppliedState(state, applied, late, tuple(rejected), last)


class CachedFeatureStore:
    """:class:`RedisFeatureStore` with a write-behind cache of states (module docstring)."""

    def __init__(self, inner: RedisFeatureStore, client: aioredis.Redis,
                 settings: FeatureSettings, max_customers: int = MAX_CUSTOMERS) -> None:
        self.inner = inner
        self._client = client
        self._ring_size = settings.dedup_ids
        self._ttl_ms = round(settings.retention_days * 86400 * 1000)
        self._max = max_customers
        self._cache: dict[str, Entry] = {}
        self._scripts = Scripts(client, {LOAD: LUA_LOAD_STATES.read_text(),
                                         STORE: LUA_STORE_STATES.read_text()})
        self._lock = asyncio.Lock()
        self._packer = msgpack.Packer(use_bin_type=False)  # used under the lock only
        self._bypass = is_cluster(client)
        self.conflicts = 0
        """Customers whose write-back found another count in Redis (applied by the script)."""

    @property
    def spec(self) -> FeatureSpec:
        return self.inner.spec

    def __len__(self) -> int:
        return len(self._cache)

    def invalidate(self) -> None:
        """Forget every cached state (partitions revoked: another worker may own them now)."""
        self._cache.clear()

    async def warm(self, event: CustomerEvent) -> None:
        """The worker's warm-up: the scripts loaded (``SCRIPT LOAD`` changes no key) and
        ``event`` applied once in memory to an empty state (the spec's key tables built);
        nothing cached, nothing written."""
        if not self._bypass:
            await self._scripts.preload()
        apply_cached({}, b"", [event], self._ring_size, self.inner.spec)

    async def get(self, customer_id: str) -> dict[str, float]:
        return await self.inner.get(customer_id)

    async def features(self, customer_id: str, now: float) -> dict[str, float]:
        return await self.inner.features(customer_id, now)

    async def forget(self, customer_id: str) -> int:
        self._cache.pop(customer_id, None)
        return await self.inner.forget(customer_id)

    async def due(self, partition: int, until: float, limit: int) -> list[DueCustomer]:
        return await self.inner.due(partition, until, limit)

    async def reschedule(self, partition: int, items: Sequence[tuple[str, float]]) -> None:
        await self.inner.reschedule(partition, items)

    async def apply(self, events: Sequence[CustomerEvent],
                    due: DueUpdates | None = None) -> dict[str, AppliedState]:
        if self._bypass or not events:
            return await self.inner.apply(events, due)
        async with self._lock:
            return await self._apply(group_by_customer(events), due)

    async def _apply(self, groups: dict[str, list[CustomerEvent]],
                     due: DueUpdates | None) -> dict[str, AppliedState]:
        cache, spec = self._cache, self.inner.spec  # (settings.spec builds a new one per call)
        if len(cache) > self._max:
            cache.clear()
        loaded = await self._load([cid for cid in groups if cid not in cache])
        out: dict[str, AppliedState] = {}
        fresh: dict[str, Entry] = {}
        writes: list[tuple[str, bytes, bytes, bytes]] = []  # cid, read n, new n, new s
        scripted: list[str] = []  # bad states: the script refuses them as before
        for cid, evs in groups.items():
            entry = cache.get(cid) or loaded.get(cid)
            if entry is None:
                scripted.append(cid)
                continue
            state, ring, read_n = entry
            state, ring, result = apply_cached(state, ring, evs, self._ring_size, spec)
            out[cid] = result
            if result.applied:
                new_n = count_text(state["n"])
                writes.append((cid, read_n, new_n, encode_stored(state, ring, self._packer)))
                fresh[cid] = (state, ring, new_n)
            elif cid in loaded:
                fresh[cid] = entry
        written = await self._write(writes, due)
        for (cid, *_), ok in zip(writes, written, strict=True):
            if not ok:
                scripted.append(cid)
                del fresh[cid]
                cache.pop(cid, None)
                self.conflicts += 1
        cache.update(fresh)
        if scripted:
            out.update(await self.inner.apply([e for cid in scripted for e in groups[cid]]))
        return {cid: out[cid] for cid in groups}

    async def _load(self, cids: list[str]) -> dict[str, Entry]:
        """States of customers not cached yet, one round trip; a bad state is left out."""
        if not cids:
            return {}
        keys = [self.inner.feature_key(cid) for cid in cids]
        replies = await self._scripts.run(LOAD, keys, [])
        out: dict[str, Entry] = {}
        for cid, (blob, n) in zip(cids, replies, strict=True):
            try:
                state, ring = decode_stored(blob)
            except BadState:
                continue
            out[cid] = (state, ring, n or b"")
        return out

    async def _write(self, writes: list[tuple[str, bytes, bytes, bytes]],
                     due: DueUpdates | None) -> list[int]:
        """Compare-and-set write-back and the due-index, one round trip; which were written."""
        shards = due_shards(due)
        if not writes and not shards:
            return []
        keys = [self.inner.feature_key(cid) for cid, *_ in writes]
        args: list[bytes | int] = [self._ttl_ms, _counts(writes),
                                   b"".join(w[3] for w in writes)]
        zadds = [(self.inner.due_key(p), mapping) for p, mapping in shards.items()]
        written = await self._scripts.run(STORE, keys, args, zadds)
        return [int(x) for x in written] if keys else []


LOAD, STORE = "load", "store"


def _counts(writes: list[tuple[str, bytes, bytes, bytes]]) -> bytes:
    """The script's second argument: per key, the ``n`` read (``-`` for none), the new ``n``
    and the blob's length, space-separated (two arguments instead of three per customer:
    redis-py packs every argument in Python)."""
    return b" ".join(b"%s %s %d" % (read_n or b"-", new_n, len(blob))
                     for _, read_n, new_n, blob in writes)
