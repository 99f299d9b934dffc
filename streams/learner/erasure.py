"""Right to erasure in the learner state: a customer's churn times, held labels and tombstones.

The state is one signed value that only the lock holder writes. ``churnpulse forget``:

* no learner running (the lock is free): takes the lock, loads the state, erases, saves it
  (signed), releases the lock;
* a learner running: adds the id to ``<prefix>:learner:forget``; the learner erases it from
  its state at its next step (about a second), checkpoints, and removes the id from the set
  (:func:`serve_forget_requests`); ``forget`` waits for that.

Label ids in the dedup ring (``recent_labels``) are producer-chosen opaque ids, kept so a
label is never learned twice; producers should not put customer ids in them (docs/security.md).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

if TYPE_CHECKING:
    from streams.learner.service import LearnerState, LearnerStateStore

# Release the lock only if it is still ours.
RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end " \
          "return 0"


def forget_key(prefix: str) -> str:
    return f"{prefix}:learner:forget"


def erase_from_state(state: LearnerState, customer_id: str) -> int:
    """Remove the customer's churn times, held labels and tombstones; returns how many."""
    removed = len(state.churn_times.pop(customer_id, []))
    held = [lb for lb in state.held if lb.customer_id != customer_id]
    tombstones = [o for o in state.tombstones if o.customer_id != customer_id]
    removed += len(state.held) - len(held) + len(state.tombstones) - len(tombstones)
    state.held[:] = held  # in place: the running loop shares these lists
    state.tombstones[:] = tombstones
    return removed


async def serve_forget_requests(client: aioredis.Redis, prefix: str, state: LearnerState,
                                save: Callable[[], Awaitable[None]]) -> list[str]:
    """The running learner's part: erase every requested id, checkpoint, then confirm."""
    key = forget_key(prefix)
    ids = sorted(m.decode() if isinstance(m, bytes) else str(m)
                 for m in await client.smembers(key))
    if not ids:
        return []
    for cid in ids:
        erase_from_state(state, cid)
    await save()
    await client.srem(key, *ids)
    return ids


async def erase_from_learner(client: aioredis.Redis, store: LearnerStateStore,
                             customer_id: str, wait_s: float = 30.0) -> str:
    """Erase the customer from the learner state; a sentence saying how it went.

    Raises :class:`TimeoutError` when a running learner did not confirm within ``wait_s``
    (the request stays: it is served when the learner next steps).
    """
    token = f"forget-{uuid.uuid4()}"
    if await client.set(store.lock_key, token, nx=True, px=60_000):
        try:
            state = await store.load()
            if state is None:
                return "no learner state"
            removed = erase_from_state(state, customer_id)
            status = await store.status() or {}
            await store.save(state, token, status)
            return f"learner state: {removed} entries removed"
        finally:
            await client.eval(RELEASE, 1, store.lock_key, token)
    prefix = store.state_key.removesuffix(":learner:state")
    await client.sadd(forget_key(prefix), customer_id)
    deadline = time.monotonic() + wait_s
    while await client.sismember(forget_key(prefix), customer_id):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the running learner has not erased {customer_id!r} within "
                               f"{wait_s:g}s; it will at its next step")
        await asyncio.sleep(0.2)
    return "learner state: erased by the running learner"
