"""The events consumer never spins on a finished batch whose done-callback is still queued."""

from __future__ import annotations

import asyncio
import threading

from streams.settings import load_settings
from streams.worker.consumer import EventConsumer


def test_drain_returns_when_a_finished_task_was_not_forgotten_yet() -> None:
    done = threading.Event()

    async def scenario() -> None:
        consumer = EventConsumer(load_settings(), make_processor=lambda sink: None)  # type: ignore[arg-type, return-value]

        async def batch() -> None:
            return None

        finished = asyncio.create_task(batch())
        await finished  # done; its _forget callback was never attached (as if still queued)
        consumer.runner._inflight.append(finished)
        await consumer.drain()
        assert not consumer.runner._inflight
        done.set()

    # in a thread: before the fix drain() spun forever without yielding
    thread = threading.Thread(target=lambda: asyncio.run(scenario()), daemon=True)
    thread.start()
    thread.join(timeout=5)
    assert done.is_set(), "drain() spins on a finished batch task"
