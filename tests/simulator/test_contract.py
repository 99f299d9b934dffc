"""The v1 wire contract, ordering, and consistency between events, labels and truth."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from streams.simulator import EVENT_TYPES, VALUE_EVENT_TYPES, Simulation

EVENT_KEYS = {"schema_version", "event_id", "customer_id", "event_type", "ts"}
OPTIONAL_KEYS = {"value", "properties"}
LABEL_KEYS = {"schema_version", "label_id", "customer_id", "ts", "churned"}


def _lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _ts(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text)
    assert parsed.utcoffset() == dt.timedelta(0), text
    assert len(text) == 29, text  # YYYY-MM-DDTHH:MM:SS.mmm+00:00
    assert text[10] == "T", text
    assert text.endswith("+00:00"), text
    return parsed


@pytest.fixture(scope="module")
def events(small_jsonl: Path) -> list[dict[str, Any]]:
    return _lines(small_jsonl / "events.jsonl")


@pytest.fixture(scope="module")
def labels(small_jsonl: Path) -> list[dict[str, Any]]:
    return _lines(small_jsonl / "labels.jsonl")


@pytest.fixture(scope="module")
def truth(small_jsonl: Path) -> pd.DataFrame:
    return pd.DataFrame(_lines(small_jsonl / "truth.jsonl"))


def test_every_event_follows_the_contract(events: list[dict[str, Any]]) -> None:
    assert len(events) > 50_000
    for e in events:
        assert EVENT_KEYS <= e.keys() <= EVENT_KEYS | OPTIONAL_KEYS, e
        assert e["schema_version"] == 1
        assert isinstance(e["event_id"], str)
        assert e["event_id"].startswith("e-7-")
        assert isinstance(e["customer_id"], str)
        assert e["customer_id"].startswith("c-")
        assert e["event_type"] in EVENT_TYPES
        _ts(e["ts"])
        if e["event_type"] in VALUE_EVENT_TYPES:
            assert isinstance(e["value"], float), e
            assert e["value"] > 0, e
        else:
            assert "value" not in e, e
        if "properties" in e:
            assert isinstance(e["properties"], dict), e
            assert e["properties"], e
        if e["event_type"] == "plan_change":
            assert {"from_plan", "to_plan"} <= e["properties"].keys(), e
    assert len({e["event_id"] for e in events}) == len(events)
    assert {e["event_type"] for e in events} == set(EVENT_TYPES)


def test_events_and_labels_are_sorted_by_time(
    events: list[dict[str, Any]], labels: list[dict[str, Any]]
) -> None:
    for rows in (events, labels):
        times = [_ts(r["ts"]) for r in rows]
        assert times == sorted(times)


def test_labels_follow_the_contract(labels: list[dict[str, Any]]) -> None:
    assert labels
    for lab in labels:
        assert lab.keys() == LABEL_KEYS
        assert lab["schema_version"] == 1
        assert lab["churned"] is True
        assert lab["label_id"].startswith("l-7-")
        _ts(lab["ts"])
    assert len({lab["label_id"] for lab in labels}) == len(labels)


def test_labels_only_for_churned_customers(
    labels: list[dict[str, Any]], truth: pd.DataFrame
) -> None:
    per_customer = pd.Series([lab["customer_id"] for lab in labels]).value_counts()
    t = truth.set_index("customer_id")
    assert t.loc[per_customer.index, "churned"].all()
    assert (t.loc[per_customer.index, "n_churns"] == per_customer).all()
    assert t.loc[~t.index.isin(per_customer.index), "n_churns"].eq(0).all()
    first = pd.DataFrame(labels).groupby("customer_id")["ts"].min()
    assert (t.loc[first.index, "churn_ts"] == first).all()


def test_no_events_between_churn_and_return(
    events: list[dict[str, Any]], labels: list[dict[str, Any]], truth: pd.DataFrame
) -> None:
    timeline: dict[str, list[tuple[str, int, dict[str, Any]]]] = defaultdict(list)
    for lab in labels:
        timeline[lab["customer_id"]].append((lab["ts"], 0, lab))
    for e in events:
        timeline[e["customer_id"]].append((e["ts"], 1, e))
    returns = 0
    for rows in timeline.values():
        rows.sort(key=lambda r: (r[0], r[1]))
        for (ts, kind, _), (next_ts, next_kind, nxt) in itertools.pairwise(rows):
            if kind == 0:  # a churn: the next thing, if any, is a reactivation
                assert next_kind == 1
                assert next_ts > ts
                assert nxt["properties"]["reason"] == "reactivation", nxt
                assert nxt["properties"]["from_plan"] == "none"
                returns += 1
    assert returns == int(truth["returned"].sum()) > 0


def test_new_customers_start_with_a_signup(
    events: list[dict[str, Any]], truth: pd.DataFrame
) -> None:
    first: dict[str, dict[str, Any]] = {}
    for e in events:
        first.setdefault(e["customer_id"], e)
    joined = truth[truth["join_ts"] >= "2026-01-01"]
    assert len(joined) > 100
    for cid, join_ts in zip(joined["customer_id"], joined["join_ts"], strict=True):
        e = first[cid]
        assert e["ts"] == join_ts
        assert e["event_type"] == "plan_change"
        assert e["properties"]["reason"] == "signup"


def test_truth_columns_and_causes(truth: pd.DataFrame, small_sim: Simulation) -> None:
    assert len(truth) == small_sim.config.n_customers
    assert truth["customer_id"].is_unique
    churned = truth[truth["churned"]]
    assert set(churned["churn_cause"]) == {"behaviour", "no_warning"}
    assert truth.loc[~truth["churned"], "churn_cause"].isna().all()
    assert churned["churn_ts"].notna().all()
    assert (churned["churn_ts"] > churned["join_ts"]).all()
    assert (truth["hazard_max"].dropna() <= 0.9).all()
    behaviour = churned[churned["churn_cause"] == "behaviour"]
    assert behaviour["churn_driver"].notna().all()
    # behaviour churners had a higher churn intent than the rest, on average
    assert behaviour["risk_z_mean"].mean() > truth["risk_z_mean"].mean()


def test_iter_events_matches_the_file(events: list[dict[str, Any]], small_sim: Simulation) -> None:
    assert list(small_sim.iter_events()) == events


def test_iter_labels_matches_the_file(labels: list[dict[str, Any]], small_sim: Simulation) -> None:
    assert list(small_sim.iter_labels()) == labels


def test_the_pipeline_decoders_accept_the_files(small_jsonl: Path) -> None:
    contracts = pytest.importorskip("streams.contracts")
    for line in (small_jsonl / "events.jsonl").read_bytes().splitlines():
        contracts.decode_event(line)
    for line in (small_jsonl / "labels.jsonl").read_bytes().splitlines():
        contracts.decode_label(line)
