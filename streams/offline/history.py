"""Reading a recorded history (a user's export) into wire records, in event-time order.

A history is an events file and optionally a labels file, each JSON lines, CSV or Parquet,
read by :mod:`streams.offline.files` and normalised by :mod:`streams.offline.rows` (column
mapping, timestamps, derived ids).

A row that cannot be turned into a valid record becomes a
:class:`~streams.offline.rows.RowError` naming file, line (CSV/JSON lines; the row number for
Parquet), column and reason; the reader counts it and goes on. Records are merged by event
time; ties keep events before labels, then file order (:func:`merge_order`).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from streams.kafka.chunk import EVENT, LABEL, Chunk
from streams.offline.files import Format, detect_format, iter_rows
from streams.offline.rows import ColumnMap, EpochUnit, HistoryError, Normalizer, RowError, _Bad


@dataclass
class Records:
    """Valid wire records of one file, in file order."""

    ts_ms: list[int] = field(default_factory=list)
    keys: list[bytes] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class Rejects:
    """Rows that could not be published: a count and the first ``keep`` of them."""

    keep: int = 20
    count: int = 0
    first: list[RowError] = field(default_factory=list)
    sink: list[RowError] | None = None

    def add(self, error: RowError) -> None:
        self.count += 1
        if len(self.first) < self.keep:
            self.first.append(error)
        if self.sink is not None:
            self.sink.append(error)


def read_file(path: Path, normalizer: Normalizer, fmt: Format | None, rejects: Rejects,
              max_rejects: int | None = None) -> Records:
    """Read and normalise one file; bad rows go to ``rejects``.

    Raises :class:`HistoryError` as soon as ``rejects.count`` exceeds ``max_rejects``.
    """
    out = Records()
    name = str(path)
    record = normalizer.record
    for line, row, reason in iter_rows(path, fmt or detect_format(path),
                                       normalizer.required_columns()):
        if row is None:
            rejects.add(RowError(name, line, "*", reason))
        else:
            try:
                ts_ms, key, value = record(row)
            except _Bad as bad:
                rejects.add(RowError(name, line, bad.column, bad.reason))
            else:
                out.ts_ms.append(ts_ms)
                out.keys.append(key)
                out.values.append(value)
                continue
        if max_rejects is not None and rejects.count > max_rejects:
            raise HistoryError(f"more than {max_rejects} bad rows (raise --max-rejects to go on "
                               f"anyway); first: {rejects.first[0]}")
    return out


def merge_order(event_ts: list[int], label_ts: list[int]) -> npt.NDArray[np.intp]:
    """Publishing order of events then labels: by time, events before labels, file order.

    Returns indices into ``events + labels`` (labels offset by ``len(event_ts)``).

    >>> merge_order([5, 1, 5], [5, 0]).tolist()
    [4, 1, 0, 2, 3]
    """
    ts = np.array(event_ts + label_ts, dtype=np.int64)
    kind = np.repeat(np.array([EVENT, LABEL], np.int8), [len(event_ts), len(label_ts)])
    order: npt.NDArray[np.intp] = np.lexsort((kind, ts))
    return order


@dataclass
class History:
    """A history ready to publish: every valid record in publishing order."""

    ts_ms: list[int]
    kinds: list[int]
    keys: list[bytes]
    values: list[bytes]
    n_events: int
    n_labels: int

    def __len__(self) -> int:
        return len(self.values)

    def chunks(self, start: int = 0, size: int = 50_000) -> Iterator[Chunk]:
        """Records ``start:`` as :class:`~streams.kafka.publish.Chunk`\\ s."""
        for lo in range(start, len(self), size):
            hi = lo + size
            yield Chunk(self.ts_ms[lo:hi], self.kinds[lo:hi], self.keys[lo:hi],
                        self.values[lo:hi])


def merge(events: Records, labels: Records) -> History:
    """Both files' records in publishing order (see :func:`merge_order`)."""
    order = merge_order(events.ts_ms, labels.ts_ms).tolist()
    ts = events.ts_ms + labels.ts_ms
    keys = events.keys + labels.keys
    values = events.values + labels.values
    n = len(events)
    return History([ts[i] for i in order], [EVENT if i < n else LABEL for i in order],
                   [keys[i] for i in order], [values[i] for i in order], n, len(labels))


def load_history(events_path: Path, labels_path: Path | None = None, *,
                 event_map: ColumnMap | None = None, label_map: ColumnMap | None = None,
                 events_format: Format | None = None, labels_format: Format | None = None,
                 assume_utc: bool = False, epoch_unit: EpochUnit = "s",
                 rejects: Rejects | None = None, max_rejects: int | None = None) -> History:
    """Read, validate and order a whole history (events and optional labels).

    The cyclic garbage collector is paused meanwhile: the records are bytes and ints (nothing
    to collect), and its passes over millions of fresh objects cost a quarter of the time.
    """
    rejects = rejects if rejects is not None else Rejects()
    paused = gc.isenabled()
    gc.disable()
    try:
        return _load(events_path, labels_path, event_map, label_map, events_format,
                     labels_format, assume_utc, epoch_unit, rejects, max_rejects)
    finally:
        if paused:
            gc.enable()


def _load(events_path: Path, labels_path: Path | None, event_map: ColumnMap | None,
          label_map: ColumnMap | None, events_format: Format | None,
          labels_format: Format | None, assume_utc: bool, epoch_unit: EpochUnit,
          rejects: Rejects, max_rejects: int | None) -> History:
    events = read_file(events_path,
                       Normalizer(event_map or ColumnMap("event"), assume_utc, epoch_unit),
                       events_format, rejects, max_rejects)
    labels = Records()
    if labels_path is not None:
        labels = read_file(labels_path,
                           Normalizer(label_map or ColumnMap("label"), assume_utc, epoch_unit),
                           labels_format, rejects, max_rejects)
    return merge(events, labels)
