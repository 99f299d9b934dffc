"""Per-customer feature state: the port, its Redis adapter and an in-memory twin.

Both implementations apply the same update (:func:`online_models.features.apply_event`) with
the same exactly-once rule. Per customer, a ring remembers the last ``dedup_ids`` applied events
(a 64-bit fingerprint of the event id and the event time in ms); an event found in the ring is a
duplicate. When an entry leaves the ring, ``dfloor`` becomes the largest event time that ever
left it, and events at or before ``dfloor`` are skipped as *late*: they can no longer be checked.
Every applied event later than ``dfloor`` is still in the ring, so re-applying events that were
applied already (a producer retry, a replay after a crash) never changes the state, and the
state after a stream depends only on the stream. Memory per customer: ``dedup_ids`` × 29 bytes.

Redis layout (every key of a customer carries the hash tag ``{c:<id>}``, so a customer's keys
share one Redis Cluster slot)::

    <prefix>:{c:<id>}:f      hash: the feature state, plus the ring in the field "ids"

The Redis adapter sends one ``EVALSHA`` per batch (not per event).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from online_models.features import apply_event
from streams.contracts import CustomerEvent
from streams.errors import TransientError
from streams.settings import FeatureSettings

LUA_APPLY_EVENTS = Path(__file__).with_name("lua") / "apply_events.lua"


@dataclass(frozen=True, slots=True)
class AppliedState:
    """A customer's state after a batch, and what the batch did to it."""

    state: dict[str, float]
    applied: int
    late: int


class FeatureStore(Protocol):
    """Applies batches of events and returns the new state of every customer touched."""

    async def apply(self, events: Sequence[CustomerEvent]) -> dict[str, AppliedState]: ...

    async def get(self, customer_id: str) -> dict[str, float]: ...


def group_by_customer(events: Iterable[CustomerEvent]) -> dict[str, list[CustomerEvent]]:
    groups: dict[str, list[CustomerEvent]] = defaultdict(list)
    for event in events:
        groups[event.customer_id].append(event)
    return groups


def fingerprint(event_id: str) -> str:
    """16 hex digits of SHA-1: the id as the dedup ring stores it.

    >>> fingerprint("e-1")
    '5ae54a43a6014f7d'
    >>> len({fingerprint(f"e-{i}") for i in range(10_000)})
    10000
    """
    return hashlib.sha1(event_id.encode(), usedforsecurity=False).hexdigest()[:16]


def ts_ms(ts: float) -> int:
    return round(ts * 1000)


class InMemoryFeatureStore:
    """The same semantics as :class:`RedisFeatureStore`, in a dict (tests, backtests)."""

    def __init__(self, settings: FeatureSettings) -> None:
        self._settings = settings
        self._states: dict[str, dict[str, float]] = {}
        self._rings: dict[str, deque[tuple[str, int]]] = {}

    async def apply(self, events: Sequence[CustomerEvent]) -> dict[str, AppliedState]:
        return {cid: self._apply_one(cid, evs) for cid, evs in group_by_customer(events).items()}

    async def get(self, customer_id: str) -> dict[str, float]:
        return dict(self._states.get(customer_id, {}))

    def _apply_one(self, cid: str, events: list[CustomerEvent]) -> AppliedState:
        cfg = self._settings
        state = self._states.get(cid, {})
        ring = self._rings.setdefault(cid, deque())
        applied = late = 0
        for ev in events:
            fp, ms = fingerprint(ev.event_id), ts_ms(ev.ts)
            floor = state.get("dfloor")
            if floor is not None and ms <= floor:
                late += 1
            elif all(fp != seen for seen, _ in ring):
                ring.append((fp, ms))
                applied += 1
                state = apply_event(state, ev.event_type, ev.ts, ev.value, cfg.max_event_types)
                if len(ring) > cfg.dedup_ids:
                    gone = ring.popleft()[1]
                    if floor is None or gone > floor:
                        state["dfloor"] = float(gone)
        self._states[cid] = state
        return AppliedState(dict(state), applied, late)


class RedisFeatureStore:
    """Feature state in Redis, one Lua call per batch."""

    def __init__(self, client: aioredis.Redis, settings: FeatureSettings, prefix: str) -> None:
        self._client = client
        self._settings = settings
        self._prefix = prefix
        self._source = LUA_APPLY_EVENTS.read_text()
        self._sha: str | None = None

    def feature_key(self, customer_id: str) -> str:
        return f"{self._prefix}:{{c:{customer_id}}}:f"

    async def get(self, customer_id: str) -> dict[str, float]:
        raw = await self._call(self._client.hgetall(self.feature_key(customer_id)))
        return {_text(k): float(v) for k, v in raw.items() if k not in (b"ids", "ids")}

    async def apply(self, events: Sequence[CustomerEvent]) -> dict[str, AppliedState]:
        if not events:
            return {}
        groups = group_by_customer(events)
        keys = [self.feature_key(cid) for cid in groups]
        request = {
            "max_types": self._settings.max_event_types,
            "ring": self._settings.dedup_ids,
            "customers": [
                [(fingerprint(e.event_id), e.event_type, e.ts, ts_ms(e.ts),
                  False if e.value is None else e.value) for e in evs]
                for evs in groups.values()
            ],
        }
        reply = orjson.loads(await self._eval(keys, orjson.dumps(request)))
        return {cid: AppliedState(state, applied, late)
                for cid, (applied, late, state) in zip(groups, reply, strict=True)}

    async def _eval(self, keys: list[str], arg: bytes) -> Any:
        if self._sha is None:
            self._sha = await self._call(self._client.script_load(self._source))
        try:
            return await self._call(self._client.evalsha(self._sha, len(keys), *keys, arg))
        except NoScriptError:  # the server restarted or flushed its script cache
            self._sha = await self._call(self._client.script_load(self._source))
            return await self._call(self._client.evalsha(self._sha, len(keys), *keys, arg))

    @staticmethod
    async def _call(awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise TransientError(f"redis unavailable: {exc}") from exc


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
