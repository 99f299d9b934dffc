"""Column-wise containers for simulated events and labels (one numpy array per field)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streams.simulator.schema import NO_PROPERTIES

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
I8 = npt.NDArray[np.int8]
F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class EventColumns:
    """Customer events in output order.

    Attributes
    ----------
    ts_ms : ndarray of int64
        Event time, milliseconds since the Unix epoch (UTC).
    customer : ndarray of int32
        Customer index (``customer_id`` is ``Simulation.customer_ids[customer]``).
    etype : ndarray of int8
        Index into :data:`streams.simulator.schema.EVENT_TYPES`.
    value : ndarray of float64
        Amount or price; NaN for types without a value.
    prop : ndarray of int32
        Code into the run's :class:`~streams.simulator.schema.PropertyTable`; -1 for none.
    """

    ts_ms: I64
    customer: I32
    etype: I8
    value: F64
    prop: I32

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    def slice(self, start: int, stop: int) -> EventColumns:
        """Rows ``start:stop`` (views, no copy)."""
        return EventColumns(
            self.ts_ms[start:stop],
            self.customer[start:stop],
            self.etype[start:stop],
            self.value[start:stop],
            self.prop[start:stop],
        )

    def take(self, index: npt.NDArray[np.intp] | Bool) -> EventColumns:
        """Rows selected by an integer index or a boolean mask (copies)."""
        return EventColumns(
            self.ts_ms[index],
            self.customer[index],
            self.etype[index],
            self.value[index],
            self.prop[index],
        )

    @staticmethod
    def empty() -> EventColumns:
        """No rows."""
        return EventColumns(
            np.empty(0, np.int64),
            np.empty(0, np.int32),
            np.empty(0, np.int8),
            np.empty(0, np.float64),
            np.empty(0, np.int32),
        )

    @staticmethod
    def concat(parts: Sequence[EventColumns]) -> EventColumns:
        """Concatenate in order."""
        if not parts:
            return EventColumns.empty()
        return EventColumns(
            np.concatenate([p.ts_ms for p in parts]),
            np.concatenate([p.customer for p in parts]),
            np.concatenate([p.etype for p in parts]),
            np.concatenate([p.value for p in parts]),
            np.concatenate([p.prop for p in parts]),
        )

    def sorted(self) -> EventColumns:
        """Sorted by time, then customer, then event type (a total, deterministic order)."""
        order = np.lexsort((self.prop, self.etype, self.customer, self.ts_ms))
        return self.take(order)


@dataclass(frozen=True)
class LabelColumns:
    """Churn labels in time order: ``ts_ms`` (int64 epoch ms) and ``customer`` (int32)."""

    ts_ms: I64
    customer: I32

    def __len__(self) -> int:
        return int(self.ts_ms.shape[0])

    @staticmethod
    def concat(parts: Sequence[LabelColumns]) -> LabelColumns:
        """Concatenate in order."""
        if not parts:
            return LabelColumns(np.empty(0, np.int64), np.empty(0, np.int32))
        return LabelColumns(
            np.concatenate([p.ts_ms for p in parts]),
            np.concatenate([p.customer for p in parts]),
        )


class EventBuffer:
    """Collects one simulated day's events, dropping those outside each customer's window.

    Parameters
    ----------
    lo, hi : ndarray of int64
        Per customer, the half-open interval ``[lo, hi)`` of event times allowed today
        (after the join or return instant, before the churn instant).
    """

    def __init__(self, lo: I64, hi: I64) -> None:
        self.lo = lo
        self.hi = hi
        self._parts: list[EventColumns] = []

    def add(
        self,
        customer: npt.NDArray[np.integer],
        ts_ms: I64,
        etype: int,
        value: F64 | None = None,
        prop: I32 | int = NO_PROPERTIES,
    ) -> Bool:
        """Add events of one type; return the mask of those kept (inside the windows)."""
        cust = customer.astype(np.int32, copy=False)
        keep = (ts_ms >= self.lo[cust]) & (ts_ms < self.hi[cust])
        n = int(np.count_nonzero(keep))
        if n:
            vals = np.full(n, np.nan) if value is None else value[keep]
            props = np.full(n, prop, np.int32) if isinstance(prop, int) else prop[keep]
            self._parts.append(
                EventColumns(ts_ms[keep], cust[keep], np.full(n, etype, np.int8), vals, props)
            )
        return keep

    def finish(self) -> EventColumns:
        """All kept events of the day in output order."""
        return EventColumns.concat(self._parts).sorted()
