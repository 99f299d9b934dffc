"""Reading a recorded history (a user's export) into wire records, in event-time order.

A history is an events file and optionally a labels file, each JSON lines, CSV or Parquet.
A :class:`ColumnMap` says which source column holds each contract field, so an export is
replayed as it is::

    ColumnMap.parse("ts=timestamp,customer_id=user,event_type=action,value=amount", "event")

Unmapped fields are looked up under their contract name. Per row:

* ``ts``: RFC 3339 / ISO 8601 text with an offset (``Z`` or ``+hh:mm``); naive text or
  datetimes only with ``assume_utc``; numbers (or numeric text) are epoch seconds, or
  milliseconds with ``epoch_unit="ms"``. Normalised to UTC with milliseconds.
* ``value``: a number or numeric text; empty or NaN means absent. ``properties``: a JSON object
  (or its text). ``churned``: true/false/1/0/yes/no; a labels file without a ``churned``
  column (a cancellations export) means every row is a churn.
* ``event_id`` / ``label_id``: when the export has none, a deterministic id is derived from
  the content (``h-`` + 24 hex digits of BLAKE2b over customer, type, time, value and
  properties; ``-2``, ``-3`` ... for repeats of identical rows). Replaying the same history
  twice gives the same ids, so the feature store deduplicates the second pass.

A row that cannot be turned into a valid record becomes a :class:`RowError` naming file,
line (CSV/JSON lines; the row number for Parquet), column and reason; the reader counts it
and goes on. Records are merged by event time; ties keep events before labels, then file
order (:func:`merge_order`).
"""

from __future__ import annotations

import csv
import datetime as dt
import gc
import hashlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

import numpy as np
import numpy.typing as npt
import orjson

from streams.contracts import MAX_EVENT_TYPE_LENGTH, MAX_ID_LENGTH, SCHEMA_VERSION
from streams.errors import ChurnpulseError
from streams.kafka.chunk import EVENT, LABEL, Chunk

Kind = Literal["event", "label"]
Format = Literal["jsonl", "csv", "parquet"]
EpochUnit = Literal["s", "ms"]
FORMATS: tuple[str, ...] = get_args(Format)
EVENT_FIELDS = ("event_id", "customer_id", "event_type", "ts", "value", "properties")
LABEL_FIELDS = ("label_id", "customer_id", "ts", "churned")
REQUIRED = {"event": ("customer_id", "event_type", "ts"), "label": ("customer_id", "ts")}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ONE_MS = dt.timedelta(milliseconds=1)
TRUE_TEXT = {"true": True, "1": True, "yes": True, "t": True, "y": True,
             "false": False, "0": False, "no": False, "f": False, "n": False}


class HistoryError(ChurnpulseError):
    """The history cannot be read at all (missing file, unknown format, missing column)."""


@dataclass(frozen=True)
class RowError:
    """One rejected row."""

    path: str
    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: column {self.column!r}: {self.reason}"


class _Bad(Exception):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column, self.reason = column, reason


@dataclass(frozen=True)
class ColumnMap:
    """Which source column holds each contract field of one record kind."""

    kind: Kind
    columns: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None, kind: Kind) -> ColumnMap:
        """Parse ``field=column,field=column``.

        >>> ColumnMap.parse("ts=when, customer_id=user", "event").source("ts")
        'when'
        >>> ColumnMap.parse("amount=value", "event")
        Traceback (most recent call last):
        ...
        streams.offline.history.HistoryError: unknown event field 'amount' in the column mapping; \
fields: event_id, customer_id, event_type, ts, value, properties
        """
        allowed = EVENT_FIELDS if kind == "event" else LABEL_FIELDS
        columns: dict[str, str] = {}
        for part in (text or "").split(","):
            if not part.strip():
                continue
            name, sep, column = (s.strip() for s in part.partition("="))
            if not sep or not name or not column:
                raise HistoryError(f"bad column mapping {part.strip()!r}: expected field=column")
            if name not in allowed:
                raise HistoryError(f"unknown {kind} field {name!r} in the column mapping; "
                                   f"fields: {', '.join(allowed)}")
            if name in columns:
                raise HistoryError(f"field {name!r} is mapped twice")
            columns[name] = column
        return cls(kind, columns)

    def source(self, name: str) -> str:
        """The source column of contract field ``name``."""
        return self.columns.get(name, name)

    def describe(self) -> str:
        """Canonical text (for checkpoints)."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.columns.items()))


def detect_format(path: Path) -> Format:
    """Format from the file name.

    >>> detect_format(Path("a.CSV")), detect_format(Path("b.ndjson")), detect_format(Path("c.pq"))
    ('csv', 'jsonl', 'parquet')
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    if suffix in {".parquet", ".pq"}:
        return "parquet"
    raise HistoryError(f"cannot tell the format of {path}: name it .jsonl, .csv or .parquet, "
                       "or pass the format")


# -- field parsing --------------------------------------------------------------------------
def parse_time_ms(raw: object, assume_utc: bool = False, epoch_unit: EpochUnit = "s") -> int:
    """Epoch milliseconds of a timestamp cell (raises ValueError with a reason).

    >>> parse_time_ms("2026-01-01T00:00:00.250Z")
    1767225600250
    >>> parse_time_ms("2026-01-01 01:00:00+01:00"), parse_time_ms(1767225600)
    (1767225600000, 1767225600000)
    >>> parse_time_ms("1767225600250", epoch_unit="ms")
    1767225600250
    >>> parse_time_ms("2026-01-01 00:00:00")
    Traceback (most recent call last):
    ...
    ValueError: '2026-01-01 00:00:00' has no UTC offset (add one, or use --assume-utc)
    """
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a timestamp")
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            raise ValueError("is empty")
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return _epoch_ms(number, epoch_unit)
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an ISO 8601 timestamp") from None
        return _datetime_ms(parsed, raw, assume_utc)
    if isinstance(raw, dt.datetime):
        return _datetime_ms(raw, raw, assume_utc)
    if isinstance(raw, int | float):
        return _epoch_ms(float(raw), epoch_unit)
    raise ValueError(f"{raw!r} is not a timestamp")


def _epoch_ms(number: float, unit: EpochUnit) -> int:
    if not math.isfinite(number):
        raise ValueError(f"{number!r} is not a finite epoch time")
    return round(number * 1000) if unit == "s" else round(number)


def _datetime_ms(parsed: dt.datetime, raw: object, assume_utc: bool) -> int:
    if parsed.tzinfo is None:
        if not assume_utc:
            raise ValueError(f"{raw!r} has no UTC offset (add one, or use --assume-utc)")
        parsed = parsed.replace(tzinfo=dt.UTC)
    return (parsed - EPOCH) // ONE_MS


def format_ms(ts_ms: int) -> str:
    """RFC 3339 UTC with milliseconds, as :func:`streams.contracts.format_ts` writes it.

    >>> format_ms(1767225600250)
    '2026-01-01T00:00:00.250+00:00'
    """
    return (EPOCH + dt.timedelta(milliseconds=ts_ms)).isoformat(timespec="milliseconds")


def _identifier(raw: object, column: str, max_len: int = MAX_ID_LENGTH) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not raw.strip():
        raise _Bad(column, "must be a non-empty string")
    raw = raw.strip()
    if len(raw) > max_len:
        raise _Bad(column, f"is longer than {max_len} characters")
    return raw


def _value(raw: object, column: str) -> float | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise _Bad(column, f"{raw!r} is not a number")
    try:
        value = float(cast(Any, raw))
    except (TypeError, ValueError):
        raise _Bad(column, f"{raw!r} is not a number") from None
    if value != value:  # NaN: how pandas-made exports spell a missing number
        return None
    if not math.isfinite(value):
        raise _Bad(column, "must be finite")
    return value


def _properties(raw: object, column: str) -> dict[str, Any] | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _Bad(column, "is not JSON") from None
    elif isinstance(raw, list) and all(isinstance(p, tuple) and len(p) == 2 for p in raw):
        raw = dict(raw)  # a Parquet map column
    if not isinstance(raw, dict):
        raise _Bad(column, "must be a JSON object")
    try:
        orjson.dumps(raw)
    except TypeError as exc:  # e.g. an integer beyond 64 bits
        raise _Bad(column, f"cannot be written as JSON ({exc})") from None
    return raw or None


def _churned(raw: object, column: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in TRUE_TEXT:
        return TRUE_TEXT[raw.strip().lower()]
    raise _Bad(column, f"{raw!r} is not a boolean")


def derive_id(prefix: str, parts: list[Any], seen: dict[bytes, int]) -> str:
    """A deterministic id from record content; repeats of identical content get ``-2``, ...

    >>> seen: dict[bytes, int] = {}
    >>> a = derive_id("h-", ["c1", "login", 0, None, None], seen)
    >>> b = derive_id("h-", ["c1", "login", 0, None, None], seen)
    >>> a, b == a + "-2"
    ('h-67c3798129cae1552fdd39f5', True)
    """
    digest = hashlib.blake2b(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS),
                             digest_size=12).digest()
    n = seen.get(digest, 0) + 1
    seen[digest] = n
    text = prefix + digest.hex()
    return text if n == 1 else f"{text}-{n}"


def _compact(data: bytes) -> bytes:
    """A right-sized copy: a bytes object from ``orjson.dumps`` keeps its ~4 KB write buffer
    allocated (measured: 4,120 bytes held per 200-byte record), which a history of millions of
    records cannot afford; the copy costs ~0.1 µs."""
    return bytes(memoryview(data))


# -- rows -> wire records -------------------------------------------------------------------
@dataclass
class Normalizer:
    """Turns source rows into ``(ts_ms, key, value)`` wire records of one kind."""

    mapping: ColumnMap
    assume_utc: bool = False
    epoch_unit: EpochUnit = "s"
    _seen: dict[bytes, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        m = self.mapping
        self._cols = {name: m.source(name) for name in
                      (EVENT_FIELDS if m.kind == "event" else LABEL_FIELDS)}
        self._churned_required = "churned" in m.columns

    def required_columns(self) -> list[str]:
        """Source columns every row must have."""
        names = list(REQUIRED[self.mapping.kind])
        if self._churned_required:
            names.append("churned")
        return [self._cols[n] for n in names]

    def _get(self, row: Mapping[str, Any], name: str) -> Any:
        column = self._cols[name]
        raw = row.get(column)
        if raw is None or raw == "":
            raise _Bad(column, "is missing")
        return raw

    def _ts(self, row: Mapping[str, Any]) -> tuple[int, str]:
        raw = self._get(row, "ts")
        try:
            ts_ms = parse_time_ms(raw, self.assume_utc, self.epoch_unit)
        except ValueError as exc:
            raise _Bad(self._cols["ts"], str(exc)) from None
        if isinstance(raw, str) and len(raw) == 29 and raw[19] == "." and raw[23:] == "+00:00":
            return ts_ms, raw  # already canonical (what we write): no need to format again
        return ts_ms, format_ms(ts_ms)

    def record(self, row: Mapping[str, Any]) -> tuple[int, bytes, bytes]:
        """``(ts_ms, key, wire bytes)`` of one row; raises ``_Bad`` naming the column."""
        return self._event(row) if self.mapping.kind == "event" else self._label(row)

    def _event(self, row: Mapping[str, Any]) -> tuple[int, bytes, bytes]:
        c = self._cols
        customer = _identifier(self._get(row, "customer_id"), c["customer_id"])
        etype = _identifier(self._get(row, "event_type"), c["event_type"], MAX_EVENT_TYPE_LENGTH)
        ts_ms, ts_text = self._ts(row)
        value = _value(row.get(c["value"]), c["value"])
        props = _properties(row.get(c["properties"]), c["properties"])
        raw_id = row.get(c["event_id"])
        if raw_id is None or raw_id == "":
            event_id = derive_id("h-", [customer, etype, ts_ms, value, props], self._seen)
        else:
            event_id = _identifier(raw_id, c["event_id"])
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "event_id": event_id,
                               "customer_id": customer, "event_type": etype,
                               "ts": ts_text}
        if value is not None:
            out["value"] = value
        if props is not None:
            out["properties"] = props
        return ts_ms, customer.encode(), _compact(orjson.dumps(out))

    def _label(self, row: Mapping[str, Any]) -> tuple[int, bytes, bytes]:
        c = self._cols
        customer = _identifier(self._get(row, "customer_id"), c["customer_id"])
        ts_ms, ts_text = self._ts(row)
        raw = row.get(c["churned"])
        if self._churned_required or not (raw is None or raw == ""):
            churned = _churned(self._get(row, "churned"), c["churned"])
        else:
            churned = True  # a cancellations export: every row is a churn
        raw_id = row.get(c["label_id"])
        if raw_id is None or raw_id == "":
            label_id = derive_id("hl-", [customer, ts_ms, churned], self._seen)
        else:
            label_id = _identifier(raw_id, c["label_id"])
        out = {"schema_version": SCHEMA_VERSION, "label_id": label_id, "customer_id": customer,
               "ts": ts_text, "churned": churned}
        return ts_ms, customer.encode(), _compact(orjson.dumps(out))


# -- files -> rows --------------------------------------------------------------------------
Row = tuple[int, Mapping[str, Any] | None, str]  # (line, row or None, reason when None)


def iter_rows(path: Path, fmt: Format, required: list[str]) -> Iterator[Row]:
    """``(line, row, "")`` per record, or ``(line, None, reason)`` for an unreadable line.

    Raises :class:`HistoryError` when the file cannot be read, or when a CSV header or Parquet
    schema lacks a required column (nothing is published then).
    """
    if not path.is_file():
        raise HistoryError(f"{path}: no such file")
    if fmt == "csv":
        return _csv_rows(path, required)
    if fmt == "parquet":
        return _parquet_rows(path, required)
    return _jsonl_rows(path)


def _missing(path: Path, have: list[str], required: list[str]) -> None:
    missing = [c for c in required if c not in have]
    if missing:
        raise HistoryError(f"{path}: no column {', '.join(map(repr, missing))} "
                           f"(columns: {', '.join(have)}); map it with --map/--label-map")


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with path.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield line, None, f"not valid JSON ({exc})"
                continue
            if isinstance(obj, dict):
                yield line, obj, ""
            else:
                yield line, None, "not a JSON object"


def _csv_rows(path: Path, required: list[str]) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8-sig") as text:
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            return
        header = [h.strip() for h in header]
        _missing(path, header, required)
        width = len(header)
        for cells in reader:
            if not cells:
                continue
            if len(cells) != width:
                yield reader.line_num, None, f"{len(cells)} cells, the header has {width}"
                continue
            yield reader.line_num, dict(zip(header, cells, strict=True)), ""


def _parquet_rows(path: Path, required: list[str]) -> Iterator[Row]:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - pyarrow is installed with the parquet extra
        raise HistoryError(
            "reading Parquet needs pyarrow: pip install 'churnpulse[parquet]'") from None
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise HistoryError(f"{path}: not a readable Parquet file ({exc})") from exc
    _missing(path, list(parquet.schema_arrow.names), required)
    row = 0
    for batch in parquet.iter_batches(batch_size=65_536):
        for obj in batch.to_pylist():
            row += 1
            yield row, obj, ""


# -- the whole history ------------------------------------------------------------------------
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


def parse_format(text: str | None) -> Format | None:
    """Validate a format name from the CLI (``None`` means: from the file name)."""
    if text is None:
        return None
    if text not in FORMATS:
        raise HistoryError(f"unknown format {text!r}; expected one of {', '.join(FORMATS)}")
    return cast(Format, text)
