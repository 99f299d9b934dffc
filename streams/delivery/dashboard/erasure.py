"""Right to erasure in the support dashboard's memory.

``churnpulse forget`` cannot reach into a running dashboard, and must leave no value in Redis
that names the customer. So it adds a keyed digest of the id (:func:`digest`) to
``<prefix>:dashboard:forget``, a sorted set scored by the time of the request and kept
:data:`KEEP_S` (longer than the dashboard's look-back at start). Every dashboard polls the set
(:func:`serve_forget_requests`), drops all it holds of the customer whose id has that digest,
and from then on ignores that customer's records dated before the request: a dashboard that
restarts re-reads its look-back window of the topics, which still hold them until retention.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

if TYPE_CHECKING:
    from streams.delivery.dashboard.board import Board

KEEP_S = 7 * 86400


def forget_key(prefix: str) -> str:
    return f"{prefix}:dashboard:forget"


def digest(prefix: str, customer_id: str) -> str:
    """A digest of the id that names nobody in Redis (salted with the key prefix).

    >>> digest("cp", "c1") == digest("cp", "c1") != digest("cp", "c10")
    True
    """
    return hashlib.sha256(f"{prefix}\0{customer_id}".encode()).hexdigest()[:32]


async def request_forget(client: aioredis.Redis, prefix: str, customer_id: str,
                         now_ms: float) -> None:
    """``churnpulse forget``'s part: ask every dashboard to erase the customer."""
    key = forget_key(prefix)
    await client.zadd(key, {digest(prefix, customer_id): now_ms})
    await client.expire(key, KEEP_S)


async def serve_forget_requests(client: aioredis.Redis, prefix: str, board: Board) -> list[str]:
    """A dashboard's part: erase the customers of requests it has not served yet."""
    items = await client.zrange(forget_key(prefix), 0, -1, withscores=True)
    requests: dict[str, float] = {}
    for item in items:
        d, ms = item[0], item[1]
        requests[d.decode() if isinstance(d, bytes) else str(d)] = float(ms)
    return board.forget_digests(requests, lambda cid: digest(prefix, cid))
