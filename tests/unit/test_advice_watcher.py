"""AdviceWatcher's background refresh ends with the watcher, not after its Redis client."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from streams.redis.retention_store import AdviceWatcher, RetentionStore


class _HangingStore:
    """A store whose version read never returns until cancelled (a client being closed)."""

    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0
        self.started = asyncio.Event()

    async def version(self) -> str | None:
        self.calls += 1
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return None


async def test_aclose_cancels_the_refresh_in_flight_and_starts_no_other() -> None:
    store = _HangingStore()
    watcher = AdviceWatcher(cast(RetentionStore, cast(Any, store)), None, poll_s=0.0)
    assert watcher.current() is None  # starts a refresh in the background
    await asyncio.wait_for(store.started.wait(), 5.0)
    await watcher.aclose()
    assert store.cancelled == 1
    assert watcher.current() is None
    for _ in range(3):
        await asyncio.sleep(0)
    assert store.calls == 1  # closed: current() no longer starts refreshes
    await watcher.aclose()  # twice is harmless
