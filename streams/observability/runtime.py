"""The event loop of a long-running process: uvloop, when it imports.

The worker and the alerter call :func:`use_uvloop` before they create their loop: less CPU
in the event loop and in the socket I/O of the Kafka and Redis clients than the standard
loop (``bench/bench_alerts.py``, ``bench/bench_pipeline.py``).
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


def use_uvloop() -> bool:
    """Run asyncio on uvloop (a dependency); the standard loop when it does not import.
    Must run before the process creates its loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a dependency; the standard loop still works
        log.warning("uvloop is not installed: running on the standard asyncio loop")
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True
