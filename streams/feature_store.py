"""Per-customer feature state: the port, its Redis adapter and an in-memory twin.

Both implementations apply the same update (:func:`online_models.features.apply_event`) with
the same exactly-once rule: an event id already applied is skipped; ids are remembered per
customer, at most ``dedup_ids`` of them and none older than ``dedup_window_s`` (event time)
before that customer's newest; once ids are evicted, events at or before the newest evicted
event time (``dfloor``) are skipped as too late and counted in the field ``late``.

Redis layout (all keys of a customer share the hash tag ``{c:<id>}``, so one customer's keys live
in one Redis Cluster slot)::

    <prefix>:{c:<id>}:f      hash: the feature state
    <prefix>:{c:<id>}:seen   sorted set: applied event ids scored by event time

The Redis adapter sends one ``EVALSHA`` per batch (not per event).
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

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


def _num(x: float) -> str:
    return repr(float(x))


class InMemoryFeatureStore:
    """The same semantics as :class:`RedisFeatureStore`, in a dict (tests, backtests)."""

    def __init__(self, settings: FeatureSettings) -> None:
        self._settings = settings
        self._states: dict[str, dict[str, float]] = {}
        self._seen: dict[str, dict[str, float]] = {}

    async def apply(self, events: Sequence[CustomerEvent]) -> dict[str, AppliedState]:
        return {cid: self._apply_one(cid, evs) for cid, evs in group_by_customer(events).items()}

    async def get(self, customer_id: str) -> dict[str, float]:
        return dict(self._states.get(customer_id, {}))

    def _apply_one(self, cid: str, events: list[CustomerEvent]) -> AppliedState:
        cfg = self._settings
        state = self._states.get(cid, {})
        seen = self._seen.setdefault(cid, {})
        applied = late = 0
        floor = state.get("dfloor")
        for ev in events:
            if floor is not None and ev.ts <= floor:
                late += 1
            elif ev.event_id not in seen:
                seen[ev.event_id] = ev.ts
                applied += 1
                state = apply_event(state, ev.event_type, ev.ts, ev.value, cfg.max_event_types)
        if late:
            state = {**state, "late": state.get("late", 0.0) + late}
        if applied:
            new_floor = _evict(seen, cfg.dedup_ids, cfg.dedup_window_s)
            if new_floor is not None and new_floor > state.get("dfloor", float("-inf")):
                state = {**state, "dfloor": new_floor}
        self._states[cid] = state
        return AppliedState(dict(state), applied, late)


def _evict(seen: dict[str, float], max_ids: int, window: float) -> float | None:
    """Drop ids outside the window or beyond the count; return the newest evicted time."""
    ordered = sorted(seen.items(), key=lambda kv: (kv[1], kv[0]))
    times = [t for _, t in ordered]
    cut = bisect.bisect_left(times, times[-1] - window)
    cut = max(cut, len(ordered) - max_ids)
    if cut <= 0:
        return None
    for event_id, _ in ordered[:cut]:
        del seen[event_id]
    return ordered[cut - 1][1]


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

    def seen_key(self, customer_id: str) -> str:
        return f"{self._prefix}:{{c:{customer_id}}}:seen"

    async def get(self, customer_id: str) -> dict[str, float]:
        raw = await self._call(self._client.hgetall(self.feature_key(customer_id)))
        return {_text(k): float(v) for k, v in raw.items()}

    async def apply(self, events: Sequence[CustomerEvent]) -> dict[str, AppliedState]:
        if not events:
            return {}
        groups = group_by_customer(events)
        keys: list[str] = []
        cfg = self._settings
        args: list[str | int] = [cfg.max_event_types, cfg.dedup_ids, _num(cfg.dedup_window_s)]
        for cid, evs in groups.items():
            keys.append(self.feature_key(cid))
            keys.append(self.seen_key(cid))
            args.append(len(evs))
            for ev in evs:
                value = "" if ev.value is None else _num(ev.value)
                args.extend((ev.event_id, ev.event_type, _num(ev.ts), value))
        reply = await self._eval(keys, args)
        out: dict[str, AppliedState] = {}
        for i, cid in enumerate(groups):
            applied, late, flat = reply[3 * i], reply[3 * i + 1], reply[3 * i + 2]
            state = {_text(flat[j]): float(flat[j + 1]) for j in range(0, len(flat), 2)}
            out[cid] = AppliedState(state, int(applied), int(late))
        return out

    async def _eval(self, keys: list[str], args: list[str | int]) -> Any:
        if self._sha is None:
            self._sha = await self._call(self._client.script_load(self._source))
        try:
            return await self._call(self._client.evalsha(self._sha, len(keys), *keys, *args))
        except NoScriptError:  # the server restarted or flushed its script cache
            self._sha = await self._call(self._client.script_load(self._source))
            return await self._call(self._client.evalsha(self._sha, len(keys), *keys, *args))

    @staticmethod
    async def _call(awaitable: Any) -> Any:
        try:
            return await awaitable
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise TransientError(f"redis unavailable: {exc}") from exc


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
