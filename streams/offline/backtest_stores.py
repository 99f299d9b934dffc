"""In-process ports of the backtest: a model source the backtest publishes to, an indexed
observation store, and a sink that keeps scores as compact columns.

They implement the same protocols as the live adapters
(:class:`~streams.worker.processor.ModelSource`,
:class:`~streams.redis.observation_store.ObservationStore`,
:class:`~streams.worker.processor.RecordSink`),
so the processor and the learning loop run unchanged; they differ only in how they hold data:

* :class:`IndexedObservationStore` keeps a heap of due times, so ``due`` costs O(k log n) for
  the k snapshots it returns instead of a scan of every pending snapshot (a year of history has
  millions of snapshots and tens of thousands of learner steps);
* :class:`ScoreLog` decodes each published score record once and keeps customer, time, score,
  model version and reason in arrays (~30 bytes per score instead of the ~350-byte record), and
  optionally the ``score_id → score`` map the live-equality test compares.
"""

from __future__ import annotations

import heapq
import itertools
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import orjson

from online_models.model import ModelHandle
from online_models.observations import LabelPolicy, Observation
from streams.records import OutRecord
from streams.redis.observation_base import InMemoryObservationStore
from streams.redis.packed_state import quantized
from streams.timefmt import parse_ts


class InProcessModels:
    """A :class:`~streams.worker.processor.ModelSource` the backtest publishes versions to."""

    def __init__(self, handle: ModelHandle) -> None:
        self.handle = handle
        self.published: list[str] = [handle.version]

    async def current(self) -> ModelHandle:
        return self.handle

    def publish(self, handle: ModelHandle) -> None:
        self.handle = handle
        self.published.append(handle.version)


class IndexedObservationStore(InMemoryObservationStore):
    """The in-memory observation store with a due-time heap and a count (same semantics as
    :class:`~streams.redis.observation_base.InMemoryObservationStore`, whose ``pending`` it
    keeps: one snapshot per customer and slot, ``due`` ordered by due time then customer id,
    non-destructive)."""

    def __init__(self, policy: LabelPolicy) -> None:
        super().__init__(policy)
        self._heap: list[tuple[float, str, int]] = []
        self._count = 0

    async def record(self, observations: Sequence[Observation]) -> int:
        new = 0
        for obs in observations:
            slots = self._by_customer.setdefault(obs.customer_id, {})
            slot = self._policy.slot(obs.t)
            if slot not in slots:
                slots[slot] = quantized(obs)  # the numbers the Redis store reads back
                heapq.heappush(self._heap, (self._policy.due(obs), obs.customer_id, slot))
                new += 1
        self._count += new
        return new

    async def due(self, until: float, limit: int) -> list[Observation]:
        heap = self._heap
        found: list[Observation] = []
        keep: list[tuple[float, str, int]] = []
        while heap and heap[0][0] <= until and len(found) < limit:
            entry = heapq.heappop(heap)
            obs = self._by_customer.get(entry[1], {}).get(entry[2])
            if obs is not None and self._policy.due(obs) == entry[0]:
                found.append(obs)
                keep.append(entry)
        for entry in keep:  # non-destructive: the caller removes what it learned
            heapq.heappush(heap, entry)
        return found

    async def remove(self, observations: Iterable[Observation]) -> None:
        for obs in observations:
            slots = self._by_customer.get(obs.customer_id)
            if slots is None:
                continue
            if slots.pop(self._policy.slot(obs.t), None) is not None:
                self._count -= 1
            if not slots:
                del self._by_customer[obs.customer_id]

    async def count(self) -> int:
        return self._count

    def all(self) -> list[Observation]:
        """Every pending snapshot (the warm start hands them to the live store)."""
        return [o for slots in self._by_customer.values() for o in slots.values()]


@dataclass
class ScoreLog:
    """A :class:`~streams.worker.processor.RecordSink` keeping score records as columns."""

    scores_topic: str
    keep_ids: bool = False
    customers: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    cid: array[int] = field(default_factory=lambda: array("l"))
    t: array[float] = field(default_factory=lambda: array("d"))
    p: array[float] = field(default_factory=lambda: array("d"))
    version: array[int] = field(default_factory=lambda: array("l"))
    sweep: array[int] = field(default_factory=lambda: array("b"))
    by_id: dict[str, tuple[float, str]] = field(default_factory=dict)
    dead_letters: int = 0

    async def publish(self, records: Sequence[OutRecord]) -> None:
        for record in records:
            if record.topic != self.scores_topic:
                self.dead_letters += 1
                continue
            data = orjson.loads(record.value)
            customer, version = data["customer_id"], data["model_version"]
            self.cid.append(self.customers.setdefault(customer, len(self.customers)))
            self.t.append(parse_ts(data["ts"]))
            self.p.append(float(data["score"]))
            self.version.append(self.versions.setdefault(version, len(self.versions)))
            self.sweep.append(int(data.get("reason") == "sweep"))
            if self.keep_ids:
                self.by_id[str(data["score_id"])] = (float(data["score"]), version)

    def __len__(self) -> int:
        return len(self.p)

    def by_customer(self, skip_version: str | None = None
                    ) -> dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]:
        """Customer id → (times, scores), sorted by time (for the days-of-warning metric);
        without the scores of model version ``skip_version``."""
        cid = np.frombuffer(self.cid, dtype=np.int_) if len(self.cid) else np.empty(0, np.int_)
        t = np.frombuffer(self.t, dtype=np.float64) if len(self.t) else np.empty(0)
        p = np.frombuffer(self.p, dtype=np.float64) if len(self.p) else np.empty(0)
        if skip_version is not None and skip_version in self.versions and cid.size:
            keep = np.frombuffer(self.version, dtype=np.int_) != self.versions[skip_version]
            cid, t, p = cid[keep], t[keep], p[keep]
        order = np.lexsort((t, cid))
        cid, t, p = cid[order], t[order], p[order]
        names = {i: name for name, i in self.customers.items()}
        out: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
        if not cid.size:
            return out
        bounds = np.flatnonzero(np.r_[True, cid[1:] != cid[:-1], True]).tolist()
        for lo, hi in itertools.pairwise(bounds):
            out[names[int(cid[lo])]] = (t[lo:hi], p[lo:hi])
        return out
