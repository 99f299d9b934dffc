"""The cyclic garbage collector kept off the hot path of a long-running process.

Processes call :func:`settle_memory` once they have imported everything and built their
clients, before the first batch. Measured on the worker's batch path
(``bench/bench_hot_path.py``) and the alerter's (``bench/bench_alerts.py --part process``):
with Python's defaults the collector took 13-19 % of the worker's CPU and about a quarter of
the alerter's.
"""

from __future__ import annotations

import gc

YOUNG = 50_000  # net new container objects between young collections (Python's default: 700)


def settle_memory() -> None:
    """Keep the cyclic garbage collector off the hot path (module docstring).

    * every object alive at start (modules, settings, clients: some 170,000-200,000) is moved
      out of its reach (``gc.freeze``): they live as long as the process, and each full
      collection walked them all again;
    * a batch holds a few container objects per event until it is done, so with the default
      thresholds (a young collection every 700 net new objects) most of them were traversed
      two or three times and promoted: a young collection every ``YOUNG`` net new objects
      instead. Reference cycles (asyncio's, aiokafka's) are still collected, later.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, 20, 10)
