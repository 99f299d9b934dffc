"""Reading event and label files (JSON lines or CSV) into wire-contract records.

CSV columns are the contract's field names; ``properties`` may hold a JSON object, empty cells
mean "absent", and ``churned`` accepts true/false/1/0/yes/no.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson

from streams.errors import InvalidMessage

Format = Literal["jsonl", "csv"]


def detect_format(path: Path) -> Format:
    """Guess the format from the file name.

    >>> detect_format(Path("events.csv")), detect_format(Path("x.ndjson"))
    ('csv', 'jsonl')
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in {".jsonl", ".ndjson", ".json"}:
        return "jsonl"
    raise ValueError(f"cannot tell the format of {path.name}: use .jsonl or .csv, or --format")


def _csv_row(row: dict[str, str], line: int) -> dict[str, Any]:
    out: dict[str, Any] = {k: v for k, v in row.items() if k and v not in (None, "")}
    if "value" in out:
        try:
            out["value"] = float(out["value"])
        except ValueError:
            raise InvalidMessage("bad_field", f"line {line}: value {out['value']!r} "
                                 "is not a number") from None
    if "properties" in out:
        try:
            out["properties"] = orjson.loads(out["properties"])
        except orjson.JSONDecodeError:
            raise InvalidMessage("bad_field", f"line {line}: properties is not JSON") from None
    if "churned" in out:
        text = str(out["churned"]).strip().lower()
        if text not in {"true", "false", "1", "0", "yes", "no"}:
            raise InvalidMessage("bad_field", f"line {line}: churned {text!r} is not a boolean")
        out["churned"] = text in {"true", "1", "yes"}
    if "schema_version" in out:
        out["schema_version"] = int(out["schema_version"])
    return out


def read_records(path: Path, fmt: Format | None = None) -> Iterator[dict[str, Any]]:
    """Yield one dict per record; raises InvalidMessage naming the line of a broken one."""
    fmt = fmt or detect_format(path)
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as text:
            for line, row in enumerate(csv.DictReader(text), start=2):
                yield _csv_row(row, line)
        return
    with path.open("rb") as handle:
        for line, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise InvalidMessage("bad_json", f"line {line}: {exc}") from None
            if not isinstance(obj, dict):
                raise InvalidMessage("not_an_object", f"line {line}: expected a JSON object")
            yield obj
