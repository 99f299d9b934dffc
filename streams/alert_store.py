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

The write is one Lua call over the batch's keys. Like the feature store's batch script it
assumes one Redis node; on Redis Cluster a batch would have to be split by slot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from alerts.batch import Stored
from alerts.segments import SegmentModel
from streams.errors import TransientError

LUA_WRITE = Path(__file__).with_name("lua") / "alert_write.lua"
Versioned = tuple[Stored, int]


class AlertStore(Protocol):
    async def read(self, customers: Iterable[str]) -> tuple[dict[str, Versioned],
                                                            dict[str, float]]:
        """Stored records (version 0 = none yet) and churn marks of these customers."""
        ...

    async def write(self, records: Mapping[str, Versioned]) -> list[str]:
        """Write ``customer -> (record, version read)`` if no version moved; else write
        nothing and return the customers whose version moved."""
        ...

    async def load_segments(self) -> SegmentModel | None: ...

    async def save_segments(self, model: SegmentModel) -> None: ...


class InMemoryAlertStore:
    """An :class:`AlertStore` in a dict (unit tests)."""

    def __init__(self) -> None:
        self.records: dict[str, Versioned] = {}
        self.churned: dict[str, float] = {}
        self.segments: SegmentModel | None = None

    async def read(self, customers: Iterable[str]) -> tuple[dict[str, Versioned],
                                                            dict[str, float]]:
        cids = list(customers)
        return ({c: self.records.get(c, (Stored(), 0)) for c in cids},
                {c: self.churned[c] for c in cids if c in self.churned})

    async def write(self, records: Mapping[str, Versioned]) -> list[str]:
        moved = [c for c, (_, v) in records.items() if self.records.get(c, (None, 0))[1] != v]
        if not moved:
            for c, (record, v) in records.items():
                self.records[c] = (Stored.from_json(orjson.loads(orjson.dumps(
                    record.to_json()))), v + 1)
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
        self._source = LUA_WRITE.read_text()
        self._sha: str | None = None

    def key(self, customer_id: str) -> str:
        return f"{self.prefix}:{{c:{customer_id}}}:alert"

    @property
    def churned_key(self) -> str:
        return f"{self.prefix}:churned"

    @property
    def segments_key(self) -> str:
        return f"{self.prefix}:alerts:segments"

    async def read(self, customers: Iterable[str]) -> tuple[dict[str, Versioned],
                                                            dict[str, float]]:
        cids = list(customers)
        if not cids:
            return {}, {}
        pipe = self._client.pipeline(transaction=False)
        for c in cids:
            pipe.hmget(self.key(c), "r", "v")
        pipe.hmget(self.churned_key, cids)
        replies = await _call(pipe.execute())
        out: dict[str, Versioned] = {}
        for c, (raw, version) in zip(cids, replies[:-1], strict=True):
            out[c] = (Stored.from_json(orjson.loads(raw)) if raw else Stored(),
                      int(version) if version else 0)
        churned = {c: float(v) for c, v in zip(cids, replies[-1], strict=True) if v is not None}
        return out, churned

    async def write(self, records: Mapping[str, Versioned]) -> list[str]:
        if not records:
            return []
        cids = list(records)
        keys = [self.key(c) for c in cids]
        args: list[Any] = [self._ttl_ms, *(records[c][1] for c in cids),
                           *(orjson.dumps(records[c][0].to_json()) for c in cids)]
        if self._sha is None:
            self._sha = await _call(self._client.script_load(self._source))
        try:
            moved = await _call(self._client.evalsha(self._sha, len(keys), *keys, *args))
        except NoScriptError:  # the server restarted or flushed its scripts
            self._sha = await _call(self._client.script_load(self._source))
            moved = await _call(self._client.evalsha(self._sha, len(keys), *keys, *args))
        return [cids[int(i) - 1] for i in moved]

    async def load_segments(self) -> SegmentModel | None:
        raw = await _call(self._client.get(self.segments_key))
        return SegmentModel.from_json(orjson.loads(raw)) if raw else None

    async def save_segments(self, model: SegmentModel) -> None:
        await _call(self._client.set(self.segments_key, orjson.dumps(model.to_json())))


async def _call(awaitable: Any) -> Any:
    try:
        return await awaitable
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise TransientError(f"redis unavailable: {exc}") from exc
