"""The backtest driver: deterministic, the label semantics hold, churned customers are not
scored, every snapshot is learned once, and the report is complete and self-contained."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from streams.cli.main import main
from streams.contracts import decode_event
from streams.kafka.chunk import EVENT
from streams.offline.backtest import BacktestOptions, BacktestRun, run_backtest
from streams.offline.backtest_report import build_report, write_report
from streams.offline.backtest_stores import IndexedObservationStore
from streams.offline.history import History, load_history
from streams.settings import load_settings
from streams.simulator import SimulationConfig, simulate, write_files
from tests.observation_store_contract import POLICY, ObservationStoreContract

CONFIG = SimulationConfig(seed=5, n_customers=200, days=130, churn_base_rate=0.10,
                          return_share=0.4)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bt-sim")
    write_files(simulate(CONFIG), out, "jsonl")
    return out


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A shorter history for the command's own test: the report's content is checked on
    ``run`` above, the command only needs to read files, run and write (a full backtest of
    ``files`` again cost 9-11 s)."""
    out = tmp_path_factory.mktemp("bt-sim-small")
    write_files(simulate(dataclasses.replace(CONFIG, n_customers=80, days=100)), out, "jsonl")
    return out


@pytest.fixture(scope="module")
def history(files: Path) -> History:
    return load_history(files / "events.jsonl", files / "labels.jsonl")


@pytest.fixture(scope="module")
def runs(history: History) -> tuple[BacktestRun, BacktestRun]:
    settings = load_settings()
    options = BacktestOptions(keep_score_ids=True, batch_size=200)
    return (asyncio.run(run_backtest(settings, history, options)),
            asyncio.run(run_backtest(settings, history, options)))


@pytest.fixture(scope="module")
def run(runs: tuple[BacktestRun, BacktestRun]) -> BacktestRun:
    return runs[0]


class TestIndexedObservationStore(ObservationStoreContract):
    @pytest.fixture
    def store(self) -> IndexedObservationStore:
        return IndexedObservationStore(POLICY)


def test_two_runs_give_identical_scores_versions_and_learning(
        runs: tuple[BacktestRun, BacktestRun]) -> None:
    a, b = runs
    assert len(a.scores) > 5000
    assert a.scores.by_id == b.scores.by_id
    assert list(a.scores.p) == list(b.scores.p)
    assert a.models.published == b.models.published
    assert [(r.customer_id, r.t, r.churned) for r in a.resolved] == \
        [(r.customer_id, r.t, r.churned) for r in b.resolved]


def test_versions_move_forward_from_untrained_and_only_after_learning(run: BacktestRun) -> None:
    published = run.models.published
    assert published[0] == "0-untrained"
    champion = load_settings().model.name  # no challenger is promoted on this small history
    assert published[1:] == [f"{n}-{champion}" for n in range(1, run.version + 1)]
    assert run.version > 10
    order = {v: i for i, v in enumerate(published)}
    names = {i: v for v, i in run.scores.versions.items()}
    seen = [order[names[v]] for v in run.scores.version]
    # scores in publication order use non-decreasing versions
    assert all(x <= y for x, y in itertools.pairwise(seen))


def test_each_snapshot_is_learned_once_with_the_label_semantics(run: BacktestRun) -> None:
    horizon = run.policy.horizon_s
    keys = [(r.customer_id, r.t) for r in run.resolved]
    assert len(keys) == len(set(keys)) == run.learner.total
    assert run.loop.counts.positives + run.loop.counts.negatives == len(keys)
    churns = defaultdict(list)
    for cid, t in run.churns:
        churns[cid].append(t)
    positives = [r for r in run.resolved if r.churned]
    assert len(positives) > 50
    for r in run.resolved:
        inside = any(r.t < t <= r.t + horizon for t in churns[r.customer_id])
        if r.churned:
            assert any(t - horizon <= r.t < t for t in churns[r.customer_id])
        else:
            assert not inside, (r.customer_id, r.t)
    # at most one snapshot per customer per observation interval
    slots = [(r.customer_id, run.policy.slot(r.t)) for r in run.resolved]
    assert len(slots) == len(set(slots))


def test_churned_customers_are_not_scored_until_they_return(run: BacktestRun,
                                                            history: History) -> None:
    events = defaultdict(list)
    for kind, value in zip(history.kinds, history.values, strict=True):
        if kind == EVENT:
            e = decode_event(value)
            events[e.customer_id].append(e.ts)
    by_customer = run.scores.by_customer()
    checked = 0
    for cid, churn_t in run.churns:
        times, _ = by_customer.get(cid, ([], []))
        for s in times:
            if s >= churn_t:
                assert any(churn_t < e <= s for e in events[cid]), (cid, churn_t, s)
                checked += 1
    returners = {cid for cid, t in run.churns if any(e > t for e in events[cid])}
    assert returners and checked > 0  # the simulation has customers who came back


def test_report_is_complete_json_and_self_contained_html(run: BacktestRun,
                                                         tmp_path: Path) -> None:
    report = build_report(run, 0.5, inputs={"events": "e", "labels": "l"})
    json_path, html_path = write_report(report, tmp_path)
    data = orjson.loads(json_path.read_bytes())
    assert data["counts"]["events"] == run.n_events
    trained = [r for r in run.resolved if r.model_version != "0-untrained"]
    assert data["online"]["n"] == len(trained) < len(run.resolved)
    assert data["counts"]["resolved_untrained"] == len(run.resolved) - len(trained)
    assert data["same_rows"]["rows"] > 0
    assert data["same_rows"]["baseline"]["roc_auc"] is not None
    assert data["warning"]["online"]["churners"] > 0
    assert b"NaN" not in json_path.read_bytes()
    page = html_path.read_text()
    assert page.count("<svg") == 4
    external = re.findall(r"(?:src|href)=['\"]?https?://", page)
    assert external == [] and "<script" not in page


def test_backtest_command_writes_the_report(small_files: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    code = main(["backtest", str(small_files / "events.jsonl"),
                 str(small_files / "labels.jsonl"),
                 "--out", str(out), "--no-progress", "--batch-size", "300"])
    assert code == 0
    assert (out / "report.html").stat().st_size > 5000
    printed = capsys.readouterr().out
    assert "online AUC" in printed and "events/s" in printed


def test_backtest_command_explains_a_bad_mapping(files: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["backtest", str(files / "events.jsonl"), str(files / "labels.jsonl"),
                 "--map", "ts=when", "--no-progress", "--out", str(tmp_path)])
    assert code == 1
    assert "when" in capsys.readouterr().err


def test_baseline_rows_hold_features_from_before_their_date_only(run: BacktestRun,
                                                                 history: History) -> None:
    from online_models.feature_vector import feature_vector
    from online_models.features import replay

    events = defaultdict(list)
    for kind, value in zip(history.kinds, history.values, strict=True):
        if kind == EVENT:
            e = decode_event(value)
            events[e.customer_id].append((e.event_type, e.ts, e.value))
    spec = load_settings().features.spec
    rows = run.month_rows
    assert len({row.t for row, _, _ in rows}) >= 3
    for row, _, _ in rows[::7]:
        before = [ev for ev in events[row.customer_id] if ev[1] < row.t]
        want = feature_vector(replay(before, spec), row.t, spec)
        assert row.x.keys() == want.keys()
        assert all(row.x[k] == pytest.approx(v, rel=1e-9, abs=1e-12) for k, v in want.items())
    # churned customers who had not come back by the date have no row
    for cid, t in run.churns:
        back = [ev for ev in events[cid] if ev[1] > t]
        for row, _, _ in rows:
            if row.customer_id == cid and row.t > t:
                assert back and back[0][1] < row.t
