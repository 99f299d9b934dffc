"""The simulation as a stream of wire records, day by day, for live publishing (still pure).

Each simulated day becomes one :class:`~streams.kafka.chunk.Chunk`: that day's events and churn
labels
merged by event time (events first on a tie), keyed by customer id, with exactly the bytes and
ids the JSON lines files hold (``events.jsonl`` lines, ``labels.jsonl`` lines). The ground truth
is never part of the stream; ask :meth:`LiveSimulation.truth` for it after the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd

from streams.kafka.chunk import EVENT, LABEL, Chunk
from streams.simulator.config import SimulationConfig
from streams.simulator.engine import DayBatch, Engine
from streams.simulator.formats import WireFormatter
from streams.simulator.schema import customer_ids


@dataclass(frozen=True)
class LiveDay:
    """One simulated day ready to publish: its records, counts, active customers, (re)joins."""

    day: int
    chunk: Chunk
    n_events: int
    n_labels: int
    active: int
    joined: int


class LiveSimulation:
    """Runs the engine lazily and yields each day's records.

    Parameters
    ----------
    config : SimulationConfig

    Examples
    --------
    >>> sim = LiveSimulation(SimulationConfig(seed=1, n_customers=50, days=3))
    >>> days = list(sim.days())
    >>> [d.day for d in days], sum(d.n_events for d in days) == sim.n_events > 0
    ([0, 1, 2], True)
    """

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.engine = Engine(config)
        self.customer_ids = customer_ids(config.n_customers)
        self._keys = [c.encode() for c in self.customer_ids]
        self.formatter = WireFormatter(config.seed, self.customer_ids, self.engine.props,
                                       config.event_types)
        self.n_events = 0
        self.n_labels = 0

    def days(self) -> Iterator[LiveDay]:
        """Simulate day after day (once), yielding each day's chunk."""
        for batch in self.engine.run():
            yield self._day(batch)

    def _day(self, batch: DayBatch) -> LiveDay:
        events, labels = batch.events, batch.labels
        ev_values = self.formatter.jsonl_events(events, self.n_events).split(b"\n")[:-1]
        lb_values = [orjson.dumps(r) for r in self.formatter.label_records(labels, self.n_labels)]
        keys = self._keys
        ts = np.concatenate([events.ts_ms, labels.ts_ms])
        kind = np.repeat(np.array([EVENT, LABEL], np.int8), [len(events), len(labels)])
        customers = np.concatenate([events.customer, labels.customer]).tolist()
        values = ev_values + lb_values
        if len(labels):
            order = np.lexsort((kind, ts))
            ts, kind = ts[order], kind[order]
            customers = [customers[i] for i in order.tolist()]
            values = [values[i] for i in order.tolist()]
        chunk = Chunk(ts.tolist(), kind.tolist(), [keys[c] for c in customers], values)
        self.n_events += len(events)
        self.n_labels += len(labels)
        counters = self.engine.outcomes.daily[-1]
        return LiveDay(batch.day, chunk, len(events), len(labels), counters["active"],
                       counters["joins"] + counters["returns"])

    def truth(self) -> pd.DataFrame:
        """Per-customer ground truth of the days simulated so far (never published)."""
        return self.engine.truth(self.customer_ids)
