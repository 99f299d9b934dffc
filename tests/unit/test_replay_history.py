"""Reading histories: column mapping, timestamps, derived ids, rejects, merge order (pure)."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import orjson
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.contracts import InputLimits, decode_event, decode_label
from streams.kafka.chunk import EVENT, LABEL
from streams.offline.history import Rejects, load_history, merge_order, read_file
from streams.offline.rows import ColumnMap, HistoryError, Normalizer, _Bad, parse_time_ms

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms


def event_norm(text: str | None = None, **kw: object) -> Normalizer:
    return Normalizer(ColumnMap.parse(text, "event"), **kw)  # type: ignore[arg-type]


def wire(record: tuple[int, bytes, bytes]) -> dict[str, object]:
    return orjson.loads(record[2])  # type: ignore[no-any-return]


# -- column mapping -------------------------------------------------------------------------
def test_mapping_names_source_columns_and_defaults_to_contract_names() -> None:
    m = ColumnMap.parse("ts=timestamp, customer_id=user,event_type=action", "event")
    assert (m.source("ts"), m.source("customer_id"), m.source("value")) == (
        "timestamp", "user", "value")
    assert m.describe() == "customer_id=user,event_type=action,ts=timestamp"
    assert ColumnMap.parse(None, "label").columns == {}


@pytest.mark.parametrize(("text", "message"), [
    ("ts", "expected field=column"),
    ("ts=", "expected field=column"),
    ("when=ts", "unknown event field 'when'"),
    ("ts=a,ts=b", "mapped twice"),
    ("churned=x", "unknown event field"),
])
def test_bad_mappings_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(HistoryError, match=message):
        ColumnMap.parse(text, "event")


# -- timestamps -----------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "kw", "expected"), [
    ("2026-01-01T00:00:00Z", {}, T0),
    ("2026-01-01T00:00:00.250+00:00", {}, T0 + 250),
    ("2026-01-01 02:00:00+02:00", {}, T0),
    ("2026-01-01T00:00:00", {"assume_utc": True}, T0),
    (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), {}, T0),
    (dt.datetime(2026, 1, 1), {"assume_utc": True}, T0),
    (pd.Timestamp("2026-01-01T00:00:00.001Z"), {}, T0 + 1),
    (1_767_225_600, {}, T0),
    (1_767_225_600.5, {}, T0 + 500),
    ("1767225600", {}, T0),
    (T0, {"epoch_unit": "ms"}, T0),
    (str(T0 + 7), {"epoch_unit": "ms"}, T0 + 7),
])
def test_timestamps_in_common_export_shapes(raw: object, kw: dict[str, object],
                                            expected: int) -> None:
    assert parse_time_ms(raw, **kw) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", ["2026-01-01T00:00:00", dt.datetime(2026, 1, 1), "yesterday",
                                 "", True, None, float("nan"), [1]])
def test_unusable_timestamps_are_refused(raw: object) -> None:
    with pytest.raises(ValueError):  # the message varies with the cause
        parse_time_ms(raw)


# -- rows -> records ------------------------------------------------------------------------
def test_mapped_row_becomes_a_valid_contract_record() -> None:
    norm = event_norm("ts=when,customer_id=user,event_type=action,value=amount,"
                      "event_id=id,properties=props")
    ts, key, value = norm.record({"when": "2026-01-01T01:00:00+01:00", "user": 42,
                                  "action": "purchase", "amount": "19.90", "id": "x-1",
                                  "props": '{"plan": "pro"}', "ignored": "yes"})
    assert (ts, key) == (T0, b"42")
    assert orjson.loads(value) == {"schema_version": 1, "event_id": "x-1", "customer_id": "42",
                                   "event_type": "purchase", "ts": "2026-01-01T00:00:00.000+00:00",
                                   "value": 19.9, "properties": {"plan": "pro"}}
    event = decode_event(value)
    assert (event.ts, event.value) == (T0 / 1000, 19.9)


def test_csv_strings_and_json_types_give_the_same_bytes() -> None:
    norm_a, norm_b = event_norm(), event_norm()
    from_csv = norm_a.record({"customer_id": "c1", "event_type": "purchase",
                              "ts": "2026-01-01T00:00:00Z", "value": "3",
                              "properties": '{"b": 1, "a": 2}'})
    from_json = norm_b.record({"customer_id": "c1", "event_type": "purchase",
                               "ts": "2026-01-01T00:00:00.000+00:00", "value": 3,
                               "properties": {"b": 1, "a": 2}})
    assert from_csv == from_json


def test_derived_ids_are_deterministic_and_distinguish_repeated_rows() -> None:
    row = {"customer_id": "c1", "event_type": "login", "ts": "2026-01-01T00:00:00Z"}
    first = [wire(event_norm().record(row))["event_id"] for _ in range(2)]
    norm = event_norm()
    again = [wire(norm.record(row))["event_id"] for _ in range(3)]
    assert first[0] == first[1] == again[0]
    assert str(first[0]).startswith("h-")
    assert again[1:] == [f"{again[0]}-2", f"{again[0]}-3"]
    other = wire(event_norm().record({**row, "value": 1}))["event_id"]
    assert other != first[0]


def test_labels_without_a_churned_column_are_churns() -> None:
    norm = Normalizer(ColumnMap.parse("ts=cancelled_at,customer_id=user", "label"))
    _, key, value = norm.record({"user": "c9", "cancelled_at": "2026-01-01T00:00:00Z"})
    label = decode_label(value)
    assert (key, label.churned, label.label_id[:3]) == (b"c9", True, "hl-")
    stated = Normalizer(ColumnMap("label")).record(
        {"customer_id": "c9", "ts": "2026-01-01T00:00:00Z", "churned": "no", "label_id": 5})
    assert (decode_label(stated[2]).churned, decode_label(stated[2]).label_id) == (False, "5")


@pytest.mark.parametrize(("row", "column", "reason"), [
    ({"event_type": "a", "ts": "2026-01-01T00:00:00Z"}, "customer_id", "is missing"),
    ({"customer_id": "c", "event_type": "a", "ts": "soon"}, "ts", "not an ISO 8601"),
    ({"customer_id": "c", "event_type": "a", "ts": "2026-01-01T00:00:00Z", "value": "x"},
     "value", "not a number"),
    ({"customer_id": "c", "event_type": "a", "ts": "2026-01-01T00:00:00Z", "value": "inf"},
     "value", "finite"),
    ({"customer_id": "c", "event_type": "a", "ts": "2026-01-01T00:00:00Z",
      "properties": "[1]"}, "properties", "JSON object"),
    ({"customer_id": "c", "event_type": "x" * 65, "ts": "2026-01-01T00:00:00Z"},
     "event_type", "longer than 64"),
])
def test_bad_cells_name_their_column(row: dict[str, object], column: str, reason: str) -> None:
    with pytest.raises(_Bad) as info:
        event_norm().record(row)
    assert info.value.column == column
    assert reason in info.value.reason


ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1,
              max_size=20).filter(str.strip).map(str.strip)


@settings(max_examples=200, deadline=None)
@given(customer=ids, etype=ids, ms=st.integers(0, 4_102_444_800_000),
       value=st.none() | st.floats(allow_nan=False, allow_infinity=False),
       props=st.none() | st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1),
                                         min_size=1))
def test_every_normalised_event_passes_the_contract(customer: str, etype: str, ms: int,
                                                    value: float | None,
                                                    props: dict[str, int] | None) -> None:
    row = {"customer_id": customer, "event_type": etype, "ts": ms, "value": value,
           "properties": props}
    ts, key, data = event_norm(epoch_unit="ms").record(row)
    # the shape passes; the consumers' bounds (time, value, size) are tested in test_input_bounds
    unbounded = InputLimits(max_future_s=math.inf, min_ts=-math.inf, max_abs_value=math.inf,
                            max_properties_bytes=2**30)
    event = decode_event(data, key, unbounded)
    assert (ts, key.decode(), event.customer_id, event.event_type) == (
        ms, customer, customer, etype)
    assert event.ts == ms / 1000
    assert event.value == value
    assert (event.properties or None) == props


# -- files ----------------------------------------------------------------------------------
def test_rejects_name_file_line_and_column_and_the_rest_is_read(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("user,action,when,amount\n"
                    "c1,login,2026-01-01T00:00:00Z,\n"
                    "c2,login,not-a-time,\n"
                    "c3,purchase,2026-01-01T00:00:01Z,abc\n"
                    "c4,login\n"
                    "c5,login,2026-01-01T00:00:02Z,1.5\n")
    rejects = Rejects()
    records = read_file(path, event_norm("customer_id=user,event_type=action,ts=when,"
                                         "value=amount"), None, rejects)
    assert records.keys == [b"c1", b"c5"]
    assert rejects.count == 3
    assert [(e.line, e.column) for e in rejects.first] == [(3, "when"), (4, "amount"), (5, "*")]
    assert str(rejects.first[0]).startswith(f"{path}:3: column 'when':")


def test_too_many_rejects_stop_reading(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text('{"customer_id": "c1"}\nnot json\n[1]\n')
    with pytest.raises(HistoryError, match="more than 1 bad rows"):
        read_file(path, event_norm(), None, Rejects(), max_rejects=1)
    rejects = Rejects()
    read_file(path, event_norm(), None, rejects)
    assert [(e.line, e.column) for e in rejects.first] == [(1, "event_type"), (2, "*"), (3, "*")]


def test_a_csv_without_a_mapped_column_fails_before_reading_rows(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("user,action,timestamp\nc1,login,2026-01-01T00:00:00Z\n")
    with pytest.raises(HistoryError, match=r"no column 'ts' \(columns: user, action, timestamp\)"):
        read_file(path, event_norm("customer_id=user,event_type=action"), None, Rejects())


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="cannot tell the format"):
        read_file(tmp_path / "e.txt", event_norm(), None, Rejects())
    with pytest.raises(HistoryError, match="no such file"):
        read_file(tmp_path / "e.csv", event_norm(), None, Rejects())


def test_parquet_rows_with_native_types(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user": ["c1", "c2"], "kind": ["login", "purchase"],
                          "at": pd.to_datetime([T0 + 5, T0], unit="ms", utc=True),
                          "amount": [float("nan"), 9.5]})
    frame.to_parquet(tmp_path / "e.parquet")
    history = load_history(tmp_path / "e.parquet",
                           event_map=ColumnMap.parse("customer_id=user,event_type=kind,ts=at,"
                                                     "value=amount", "event"))
    assert history.keys == [b"c2", b"c1"]  # time order
    first, second = (json.loads(v) for v in history.values)
    assert (first["value"], "value" in second) == (9.5, False)
    assert second["ts"] == "2026-01-01T00:00:00.005+00:00"


# -- merge order ----------------------------------------------------------------------------
def test_merge_orders_by_time_then_events_before_labels_then_file_order(tmp_path: Path) -> None:
    assert merge_order([5, 1, 5, 1], [5, 0, 1]).tolist() == [5, 1, 3, 6, 0, 2, 4]
    (tmp_path / "e.jsonl").write_text(
        '{"customer_id":"a","event_type":"x","ts":"2026-01-01T00:00:02Z"}\n'
        '{"customer_id":"b","event_type":"x","ts":"2026-01-01T00:00:01Z"}\n')
    (tmp_path / "l.jsonl").write_text(
        '{"customer_id":"a","ts":"2026-01-01T00:00:01Z","churned":true}\n')
    history = load_history(tmp_path / "e.jsonl", tmp_path / "l.jsonl")
    assert (history.keys, history.kinds) == ([b"b", b"a", b"a"], [EVENT, LABEL, EVENT])
    chunks = list(history.chunks(start=1, size=1))
    assert [c.keys for c in chunks] == [[b"a"], [b"a"]]
    assert (history.n_events, history.n_labels) == (2, 1)


def test_properties_json_cannot_hold_is_a_reject() -> None:
    with pytest.raises(_Bad, match="cannot be written as JSON"):
        event_norm().record({"customer_id": "c", "event_type": "a", "ts": T0 / 1000,
                             "properties": {"n": 2**70}})
