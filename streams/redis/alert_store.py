"""Where the alerter keeps its per-customer records: the port, Redis, and an in-memory twin.

Each customer's :class:`~alerts.batch.Stored` record (risk state, last applied score offset,
outbox) is stored with a version. :meth:`AlertStore.write` is all-or-nothing and
compare-and-set: it writes every record of a batch only if none changed since it was read (a
second alerter that still believes it owns a partition cannot interleave its writes), otherwise
it writes nothing and names the customers that changed.

Redis layout (the customer's hash tag, as the feature store's keys)::

    <prefix>:{c:<id>}:alert    hash: "r" the record as JSON, "v" its version; TTL = state_ttl
    <prefix>:churned           hash: customer -> churn time (epoch s), written by the learner
    <prefix>:alerts:segments   the behaviour segments' centroids (JSON)
    <prefix>:alerts:budget:<scores topic>:<partition>   budget mode: hash "r" the partition's
                               budget state (JSON, sketch window as float32), "v" version

The read and the write are one Lua call each over the batch's keys (on Redis Cluster: reads
pipelined, the write version-checked then compare-and-set per slot); their per-customer
arguments (versions, records, customer ids) travel as one MessagePack argument, not one
argument each: redis-py encodes arguments one by one, which cost the alerter more CPU per
score than the Lua itself costs Redis.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgpack  # type: ignore[import-untyped]
import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from alerts.batch import Stored
from alerts.segments import SegmentModel
from online_models.features import catalogue
from streams.redis.client import call
from streams.redis.cluster import ClusterScript, is_cluster
from streams.redis.feature_store import STATE_FIELD, RedisFeatureStore
from streams.redis.packed_state import unpack_state

LUA_WRITE = Path(__file__).with_name("lua") / "alert_write.lua"
LUA_READ = Path(__file__).with_name("lua") / "alert_read.lua"
LUA_FEATURES = Path(__file__).with_name("lua") / "alert_features.lua"
Versioned = tuple[Stored, int]
BudgetRecord = tuple[str, dict[str, Any], int]
"""A partition's budget state to write with a batch: (name, JSON-ready record, version read)."""


class AlertStore(Protocol):
    async def read(self, customers: Iterable[str], known: Collection[str] = ()
                   ) -> tuple[dict[str, Versioned], dict[str, float]]:
        """Stored records (version 0 = none yet) and churn marks of these customers; the
        records of the ``known`` ones (the caller holds them) are not read."""
        ...

    async def write(self, records: Mapping[str, Versioned],
                    budget: BudgetRecord | None = None) -> list[str]:
        """Write ``customer -> (record, version read)`` (and the partition's budget state) if
        no version moved; else write nothing and return the customers whose version moved
        (``budget:<name>`` for the budget state)."""
        ...

    async def read_budget(self, name: str, known: int | None = None
                          ) -> tuple[dict[str, Any] | None, int]:
        """A partition's budget state and its version (0 = none); the record is None (not
        read) when the version is ``known``."""
        ...

    async def load_segments(self) -> SegmentModel | None: ...

    async def save_segments(self, model: SegmentModel) -> None: ...


class InMemoryAlertStore:
    """An :class:`AlertStore` in a dict (unit tests)."""

    def __init__(self) -> None:
        self.records: dict[str, Versioned] = {}
        self.churned: dict[str, float] = {}
        self.segments: SegmentModel | None = None
        self.budgets: dict[str, tuple[dict[str, Any], int]] = {}

    async def read_budget(self, name: str, known: int | None = None
                          ) -> tuple[dict[str, Any] | None, int]:
        data, version = self.budgets.get(name, (None, 0))
        return (None if version == known else data), version

    async def read(self, customers: Iterable[str], known: Collection[str] = ()
                   ) -> tuple[dict[str, Versioned], dict[str, float]]:
        cids = list(customers)
        return ({c: self.records.get(c, (Stored(), 0)) for c in cids if c not in known},
                {c: self.churned[c] for c in cids if c in self.churned})

    async def write(self, records: Mapping[str, Versioned],
                    budget: BudgetRecord | None = None) -> list[str]:
        moved = [c for c, (_, v) in records.items() if self.records.get(c, (None, 0))[1] != v]
        if budget is not None and self.budgets.get(budget[0], (None, 0))[1] != budget[2]:
            moved.append(f"budget:{budget[0]}")
        if not moved:
            for c, (record, v) in records.items():
                self.records[c] = (Stored.from_json(orjson.loads(record.encode())), v + 1)
            if budget is not None:
                self.budgets[budget[0]] = (orjson.loads(orjson.dumps(budget[1])), budget[2] + 1)
        return moved

    async def load_segments(self) -> SegmentModel | None:
        return self.segments

    async def save_segments(self, model: SegmentModel) -> None:
        self.segments = model


class RedisAlertStore:
    """An :class:`AlertStore` on Redis (layout in the module docstring)."""

    def __init__(self, client: aioredis.Redis, prefix: str, ttl_s: float = 0.0) -> None:
        self._client = client
        self.prefix = prefix
        self._ttl_ms = round(ttl_s * 1000)
        self._scripts = {"write": LUA_WRITE.read_text(), "read": LUA_READ.read_text()}
        self._script = _Scripts(client, self._scripts)
        self._cluster: dict[str, ClusterScript] = {}
        self._on_cluster = is_cluster(client)  # asked once: an isinstance of a Protocol class

    def key(self, customer_id: str) -> str:
        return f"{self.prefix}:{{c:{customer_id}}}:alert"

    @property
    def churned_key(self) -> str:
        return f"{self.prefix}:churned"

    @property
    def segments_key(self) -> str:
        return f"{self.prefix}:alerts:segments"

    def budget_key(self, name: str) -> str:
        return f"{self.prefix}:alerts:budget:{name}"

    async def read_budget(self, name: str, known: int | None = None
                          ) -> tuple[dict[str, Any] | None, int]:
        key = self.budget_key(name)
        version = await call(self._client.hget(key, "v"))
        v = int(version) if version else 0
        if v == known:
            return None, v
        raw, version = await call(self._client.hmget(key, "r", "v"))
        return (orjson.loads(raw) if raw else None), int(version) if version else 0

    async def read(self, customers: Iterable[str], known: Collection[str] = ()
                   ) -> tuple[dict[str, Versioned], dict[str, float]]:
        every = list(customers)
        wanted = [c for c in every if c not in known] if known else every
        cids = [*wanted, *(c for c in every if c in known)] if known else wanted
        if not cids:
            return {}, {}
        n = len(wanted)
        if self._on_cluster:  # no script over many slots: one pipeline of reads
            pipe = self._client.pipeline(transaction=False)
            for c in wanted:
                pipe.hmget(self.key(c), "r", "v")
            pipe.hmget(self.churned_key, cids)
            *records, marks = await call(pipe.execute())
            reply = [x for rv in records for x in rv] + list(marks)
        else:
            reply = await self._script("read", [*(self.key(c) for c in wanted),
                                                self.churned_key], [_pack(cids)])
        out: dict[str, Versioned] = {}
        for i, c in enumerate(wanted):
            raw, version = reply[2 * i], reply[2 * i + 1]
            out[c] = (Stored.from_json(orjson.loads(raw)) if raw else Stored(),
                      int(version) if version else 0)
        churned = {c: float(v) for c, v in zip(cids, reply[2 * n:], strict=True) if v}
        return out, churned

    async def write(self, records: Mapping[str, Versioned],
                    budget: BudgetRecord | None = None) -> list[str]:
        if not records and budget is None:
            return []
        cids = list(records)
        keys = [self.key(c) for c in cids]
        versions: list[Any] = [records[c][1] for c in cids]
        values: list[Any] = [records[c][0].encode() for c in cids]
        names = list(cids)
        if budget is not None:  # one more record of the same all-or-nothing write
            keys.append(self.budget_key(budget[0]))
            versions.append(budget[2])
            values.append(orjson.dumps(budget[1]))
            names.append(f"budget:{budget[0]}")
        if self._on_cluster:  # check every version, then compare-and-set per slot
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.hget(key, "v")
            stored = await call(pipe.execute())
            stale = [n for n, v, now in zip(names, versions, stored, strict=True)
                     if (now.decode() if isinstance(now, bytes) else str(now or "0")) != str(v)]
            if stale:
                return stale
            script = self._cluster.setdefault("write", ClusterScript(self._scripts["write"]))
            done = await script.run_per_slot(
                self._client, keys, lambda g: [self._ttl_ms, _pack(
                    [*(versions[i] for i in g), *(values[i] for i in g)])])
            return [names[group[int(i) - 1]] for group, moved in done for i in moved]
        moved = await self._script("write", keys, [self._ttl_ms, _pack([*versions, *values])])
        return [names[int(i) - 1] for i in moved]

    async def load_segments(self) -> SegmentModel | None:
        raw = await call(self._client.get(self.segments_key))
        return SegmentModel.from_json(orjson.loads(raw)) if raw else None

    async def save_segments(self, model: SegmentModel) -> None:
        await call(self._client.set(self.segments_key, orjson.dumps(model.to_json())))


class _Scripts:
    """Lua scripts of one client by name: EVALSHA, loaded on first use and again when the
    server lost them (restart, SCRIPT FLUSH)."""

    def __init__(self, client: aioredis.Redis, sources: Mapping[str, str],
                 read_only: bool = False) -> None:
        self._client = client
        self._sources = sources
        self._shas: dict[str, str] = {}
        # EVALSHA_RO (Redis 7) declares its keys read-only to ACLs: a user with read-only
        # access to them (the alerter's ``%R~`` on features) may run a script that only reads
        self._read_only = read_only

    async def __call__(self, name: str, keys: list[str], args: list[Any]) -> Any:
        # keys as UTF-8 bytes, as redis-py would send them: it takes bytes as they are, while
        # each str goes through its encoder (~1.3 µs a key against ~0.4 for bytes, and the
        # alerter's scripts take one key per customer of the batch)
        keys_b: list[Any] = [k.encode() for k in keys]
        sha = self._shas.get(name)
        if sha is None:
            sha = self._shas[name] = await call(self._client.script_load(self._sources[name]))
        try:
            return await call(self._run(sha, keys_b, args))
        except NoScriptError:  # the server restarted or flushed its scripts
            sha = self._shas[name] = await call(self._client.script_load(self._sources[name]))
            return await call(self._run(sha, keys_b, args))

    def _run(self, sha: str, keys: list[Any], args: list[Any]) -> Any:
        if self._read_only:
            return self._client.evalsha_ro(sha, len(keys), *keys, *args)
        return self._client.evalsha(sha, len(keys), *keys, *args)


def _pack(values: list[Any]) -> bytes:
    """One script argument holding many: a MessagePack array (Lua ``cmsgpack.unpack``; byte
    strings as MessagePack *str*, which Redis's cmsgpack reads, not *bin*, which it refuses)."""
    return msgpack.packb(values, use_bin_type=False)  # type: ignore[no-any-return]


class RedisFeatureReader:
    """The feature catalogue of several customers in one round trip: one Lua call (on Redis
    Cluster a pipeline; a pipeline of HGETs cost the alerter ~20 µs of CPU per customer in
    redis-py's per-reply parsing and timeouts, the script's one reply a fraction of it)."""

    def __init__(self, store: RedisFeatureStore, client: aioredis.Redis) -> None:
        self._store = store
        self._client = client
        self._script = _Scripts(client, {"features": LUA_FEATURES.read_text()}, read_only=True)
        self._on_cluster = is_cluster(client)

    async def features_many(self, customers: Sequence[str],
                            at: Mapping[str, float]) -> dict[str, dict[str, float]]:
        if not customers:
            return {}
        keys = [self._store.feature_key(c) for c in customers]
        if self._on_cluster:  # keys on many slots: no one script
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.hget(key, STATE_FIELD)
            replies = await call(pipe.execute())
        else:
            replies = await self._script("features", keys, [STATE_FIELD])
        spec = self._store.spec
        return {c: catalogue(unpack_state(raw), at[c], spec)
                for c, raw in zip(customers, replies, strict=True)}
