from __future__ import annotations

from pathlib import Path

import pytest

from streams.errors import InvalidMessage
from streams.offline.files import read_records
from streams.offline.rows import HistoryError


def test_csv_and_jsonl_give_the_same_records(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text(
        '{"event_id":"e1","customer_id":"c1","event_type":"purchase",'
        '"ts":"2026-01-01T00:00:00Z","value":9.5,"properties":{"sku":"a"}}\n\n'
        '{"event_id":"e2","customer_id":"c1","event_type":"login","ts":"2026-01-01T00:01:00Z"}\n')
    (tmp_path / "e.csv").write_text(
        "event_id,customer_id,event_type,ts,value,properties\n"
        'e1,c1,purchase,2026-01-01T00:00:00Z,9.5,"{""sku"":""a""}"\n'
        "e2,c1,login,2026-01-01T00:01:00Z,,\n")
    assert list(read_records(tmp_path / "e.jsonl")) == list(read_records(tmp_path / "e.csv"))


def test_broken_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"customer_id":"c1","event_type":"login","ts":"2026-01-01T00:00:00Z"}\n'
                    '{broken\n')
    with pytest.raises(InvalidMessage, match="line 2"):
        list(read_records(path))


def test_label_csv_booleans(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("label_id,customer_id,ts,churned\nl1,c1,2026-01-01T00:00:00Z,yes\n"
                    "l2,c2,2026-01-01T00:00:00Z,0\n")
    assert [r["churned"] for r in read_records(path, kind="label")] == [True, False]


def test_unknown_extension_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="format"):
        list(read_records(tmp_path / "x.txt"))
