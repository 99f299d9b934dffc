"""Small simulated histories split in time, for the backtest integration tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from streams.kafka.chunk import EVENT
from streams.offline.history import History, load_history
from streams.simulator import SimulationConfig, simulate, write_files

DAY = 86400.0


def simulated(out: Path, customers: int = 120, days: int = 75, seed: int = 3) -> History:
    config = SimulationConfig(seed=seed, n_customers=customers, days=days,
                              churn_base_rate=0.10)
    write_files(simulate(config), out, "jsonl")
    return load_history(out / "events.jsonl", out / "labels.jsonl")


def subset(history: History, keep: Callable[[int, int], bool]) -> History:
    """The records ``keep(ts_ms, kind)`` accepts, in the same order."""
    idx = [i for i, (ts, kind) in enumerate(zip(history.ts_ms, history.kinds, strict=True))
           if keep(ts, kind)]
    kinds = [history.kinds[i] for i in idx]
    return History([history.ts_ms[i] for i in idx], kinds, [history.keys[i] for i in idx],
                   [history.values[i] for i in idx], sum(k == EVENT for k in kinds),
                   sum(k != EVENT for k in kinds))
