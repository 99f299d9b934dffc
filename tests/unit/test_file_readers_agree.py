"""``produce`` and ``replay`` read files with the same reader: a row one accepts, the other
accepts as the same wire record; a row one refuses, the other refuses (issue 9: ``produce``
used to refuse ``churned`` spellings, epoch times and missing ids that ``replay`` accepted)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.errors import InvalidMessage
from streams.kafka.producer import to_wire
from streams.offline.files import read_records
from streams.offline.history import Rejects, load_history
from streams.offline.rows import HistoryError, Kind

TS = "2026-01-01T00:00:00Z"
EVENT = {"event_id": "e", "customer_id": "c1", "event_type": "login", "ts": TS}
LABEL = {"label_id": "l", "customer_id": "c1", "ts": TS, "churned": True}

EVENT_ROWS: list[tuple[dict[str, Any], bool]] = [
    (EVENT, True),
    ({**EVENT, "ts": "2026-01-01T01:00:00+01:00"}, True),
    ({**EVENT, "ts": 1_767_225_600}, True),  # epoch seconds
    ({**EVENT, "ts": "2026-01-01 00:00:00"}, False),  # no offset
    ({**EVENT, "ts": "yesterday"}, False),
    ({k: v for k, v in EVENT.items() if k != "event_id"}, True),  # derived id
    ({k: v for k, v in EVENT.items() if k != "event_type"}, False),
    ({**EVENT, "value": "12.5"}, True),
    ({**EVENT, "value": "twelve"}, False),
    ({**EVENT, "properties": {"plan": "pro"}}, True),
    ({**EVENT, "properties": [1, 2]}, False),
    ({**EVENT, "customer_id": 42}, True),
    ({**EVENT, "event_type": "x" * 65}, False),
    ({**EVENT, "schema_version": 1}, True),
    ({**EVENT, "schema_version": 2}, False),
]
LABEL_ROWS: list[tuple[dict[str, Any], bool]] = [
    (LABEL, True),
    ({**LABEL, "churned": False}, True),
    ({**LABEL, "churned": 1}, True),
    ({**LABEL, "churned": "yes"}, True),
    ({**LABEL, "churned": "t"}, True),
    ({**LABEL, "churned": "N"}, True),
    ({**LABEL, "churned": "maybe"}, False),
    ({**LABEL, "churned": 2}, False),
    ({k: v for k, v in LABEL.items() if k != "label_id"}, True),
    ({**LABEL, "ts": "not a time"}, False),
]


def write(path: Path, rows: list[dict[str, Any]], fmt: str) -> Path:
    if fmt == "jsonl":
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
        return path
    columns = sorted({k for r in rows for k in r})
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v
                             for k, v in r.items()})
    return path


def produced(path: Path, kind: Kind) -> dict[str, Any] | None:
    """What ``produce`` sends for a one-row file (validated as the producer SDK does), or None."""
    try:
        records = list(read_records(path, kind=kind))
        wire = [to_wire(r, kind) for r in records]
    except (InvalidMessage, HistoryError):  # HistoryError: a CSV header without the column
        return None
    assert len(wire) == 1
    return dict(orjson.loads(wire[0]))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("kind", ["event", "label"])
def test_produce_and_replay_accept_and_refuse_the_same_rows(tmp_path: Path, fmt: str,
                                                             kind: Kind) -> None:
    cases = EVENT_ROWS if kind == "event" else LABEL_ROWS
    if fmt == "csv":  # a CSV cell cannot hold a JSON list apart from a string that is not JSON
        cases = [(r, ok) for r, ok in cases if not isinstance(r.get("properties"), list)]
    # replay reads every row of one file (each row its own customer, to find it again)
    rows = [{**r, "customer_id": f"{r.get('customer_id')}-{i}"} for i, (r, _) in enumerate(cases)]
    whole = write(tmp_path / f"all.{fmt}", rows, fmt)
    rejects = Rejects(keep=100)
    if kind == "event":
        history = load_history(whole, rejects=rejects)
    else:
        events = write(tmp_path / f"none.{fmt}", [EVENT], fmt)
        history = load_history(events, whole, rejects=rejects)
    replayed = {orjson.loads(v)["customer_id"]: dict(orjson.loads(v))
                for v in history.values if b'"c1"' not in v}
    for i, (row, ok) in enumerate(cases):
        one = write(tmp_path / f"row{i}.{fmt}", [rows[i]], fmt)
        got_produce = produced(one, kind)
        got_replay = replayed.get(rows[i]["customer_id"])
        assert (got_produce is not None, got_replay is not None) == (ok, ok), (i, row)
        if ok:
            assert got_produce == got_replay, (i, row)
    assert rejects.count == sum(not ok for _, ok in cases)
