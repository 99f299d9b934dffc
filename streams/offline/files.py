"""The one reader of event and label files (JSON lines, CSV or Parquet), for every command.

:func:`iter_rows` turns a file into source rows; :class:`~streams.offline.rows.Normalizer` turns
rows into wire records. ``replay`` and ``backtest`` read whole histories through
:mod:`streams.offline.history` (a bad row is counted and skipped); ``produce`` streams one file
through :func:`read_records` (the first bad row refuses the file). Both use the same rows and the
same normalisation, so a record one command accepts the other accepts too.

CSV: a header row names the columns (a UTF-8 byte-order mark is ignored); empty cells mean
"absent". JSON lines: one object per line; blank lines are skipped. Parquet needs the
``parquet`` extra (pyarrow).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, cast, get_args

import orjson

from streams.errors import InvalidMessage
from streams.offline.rows import ColumnMap, HistoryError, Kind, Normalizer, _Bad

Format = Literal["jsonl", "csv", "parquet"]
FORMATS: tuple[str, ...] = get_args(Format)


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


def parse_format(text: str | None) -> Format | None:
    """Validate a format name from the CLI (``None`` means: from the file name)."""
    if text is None:
        return None
    if text not in FORMATS:
        raise HistoryError(f"unknown format {text!r}; expected one of {', '.join(FORMATS)}")
    return cast(Format, text)


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


def read_records(path: Path, fmt: Format | None = None,
                 kind: Kind = "event") -> Iterator[dict[str, Any]]:
    """The records of one file as wire-contract dicts, normalised as ``replay`` normalises them
    (contract field names as columns), in file order.

    The first row that cannot be read or normalised raises
    :class:`~streams.errors.InvalidMessage` with the contract's reason code and the file, line
    and column; a file that cannot be read at all raises
    :class:`~streams.offline.rows.HistoryError`.
    """
    fmt = fmt or detect_format(path)
    normalizer = Normalizer(ColumnMap(kind))
    for line, row, reason in iter_rows(path, fmt, normalizer.required_columns()):
        if row is None:
            code = "bad_json" if fmt == "jsonl" else "bad_row"
            raise InvalidMessage(code, f"{path} line {line}: {reason}")
        try:
            _, _, value = normalizer.record(row)
        except _Bad as bad:
            raise InvalidMessage(bad.code, f"{path} line {line}: column {bad.column!r}: "
                                           f"{bad.reason}") from None
        yield orjson.loads(value)
