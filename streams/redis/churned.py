"""Customers who churned, until they come back: the port, an in-memory and a Redis
implementation.

Redis layout::

    <prefix>:churned    hash: customer id -> churn time (epoch seconds; a later churn wins)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import redis.asyncio as aioredis

from streams.redis.client import call, raise_fields


class ChurnedCustomers(Protocol):
    """Customers who churned, with their churn time, until they come back.

    The learner marks a customer on its churn label; the worker skips a marked customer while
    its newest event is at or before the churn time, and clears the mark (``returned``) on the
    first event after it.
    """

    async def churned_since(self, ids: Sequence[str]) -> dict[str, float]:
        """Churn time of each of ``ids`` that is marked churned."""
        ...

    async def mark(self, customer_id: str, ts: float) -> None:
        """Mark a churn at ``ts`` (a later churn time wins)."""
        ...

    async def returned(self, ids: Iterable[str]) -> None: ...


class InMemoryChurnedCustomers:
    """:class:`ChurnedCustomers` in a dict (tests, in-process backtests)."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    async def churned_since(self, ids: Sequence[str]) -> dict[str, float]:
        times = self.times
        return {cid: times[cid] for cid in ids if cid in times}

    async def mark(self, customer_id: str, ts: float) -> None:
        if ts > self.times.get(customer_id, float("-inf")):
            self.times[customer_id] = ts

    async def mark_many(self, marks: Mapping[str, float]) -> None:
        for cid, ts in marks.items():
            await self.mark(cid, ts)

    async def returned(self, ids: Iterable[str]) -> None:
        for cid in ids:
            self.times.pop(cid, None)


class RedisChurnedCustomers:
    """:class:`ChurnedCustomers` as one Redis hash ``<prefix>:churned``: id -> churn time."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self.key = f"{prefix}:churned"

    async def churned_since(self, ids: Sequence[str]) -> dict[str, float]:
        if not ids:
            return {}
        values = await call(self._client.hmget(self.key, list(ids)))
        return {cid: float(v) for cid, v in zip(ids, values, strict=True) if v is not None}

    async def mark(self, customer_id: str, ts: float) -> None:
        await self.mark_many({customer_id: ts})

    async def mark_many(self, marks: Mapping[str, float]) -> None:
        if not marks:
            return
        await raise_fields(self._client, self.key, marks)

    async def returned(self, ids: Iterable[str]) -> None:
        found = list(ids)
        if found:
            await call(self._client.hdel(self.key, *found))
