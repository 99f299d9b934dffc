"""Scenarios: the default stays byte-identical; each mechanism plants the signal it claims."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from streams.simulator import SimulationConfig, run_to_files, simulate
from streams.simulator import schema as s
from streams.simulator.analysis import cohorts, daily_counts, roc_auc
from streams.simulator.engine import Engine
from streams.simulator.mechanisms import Mechanisms
from streams.simulator.scenarios import APP_VOCABULARY, SCENARIOS, scenario

CFG = SimulationConfig(seed=3, n_customers=400, days=45, return_share=0.3)
#: sha256 of the files this config gave at commit 3fa26b6, before scenarios existed.
PINNED = {
    "events.jsonl": "199fadd878b6235e",
    "labels.jsonl": "12d68988e9b34d69",
    "truth.jsonl": "cb37c1213fc2a9c0",
}
OBS_DAYS = (60, 90, 120)


def _world(name: str, seed: int = 5, customers: int = 3000, days: int = 150) -> SimulationConfig:
    return scenario(name).apply(SimulationConfig(seed=seed, n_customers=customers, days=days))


def _day(ms: npt.NDArray[np.int64], cfg: SimulationConfig) -> npt.NDArray[np.int64]:
    never = np.iinfo(np.int64).max // 4
    day: npt.NDArray[np.int64] = np.where(ms < 0, never, (ms - s.midnight_ms(cfg.start))
                                          // s.MS_PER_DAY)
    return day


def test_default_scenario_is_the_plain_simulator_byte_for_byte(tmp_path: Path) -> None:
    assert scenario("default").apply(CFG) is CFG
    run_to_files(scenario("default").apply(CFG), tmp_path)
    got = {name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()[:16]
           for name in PINNED}
    assert got == PINNED


def test_at_least_four_scenarios_and_unknown_names_are_clear_errors() -> None:
    assert len(SCENARIOS) >= 5 and "default" in SCENARIOS
    with pytest.raises(ValueError, match="unknown scenario 'nope'; expected one of default"):
        scenario("nope")
    with pytest.raises(ValueError, match="weights needs 6 values"):
        Mechanisms(weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="vocabulary needs 8 names"):
        Mechanisms(vocabulary=("a", "b"))


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n != "default"])
def test_every_scenario_is_deterministic_and_churns(name: str) -> None:
    cfg = _world(name, customers=300, days=60)
    a, b = simulate(cfg), simulate(cfg)
    assert a.events_frame().equals(b.events_frame())
    assert np.array_equal(a.labels.ts_ms, b.labels.ts_ms)
    assert len(a.labels) > 0 and a.ground_truth()["churned"].sum() > 0


def test_mix_churn_is_carried_by_the_ratio_of_feature_uses_to_sessions_not_volume() -> None:
    sim = simulate(_world("mix"))
    ev = sim.events
    sessions = daily_counts(sim, ev.etype == s.SESSION)
    features = daily_counts(sim, ev.etype == s.FEATURE_USE)
    y, shallow, volume = [], [], []
    for c in cohorts(sim, OBS_DAYS):
        n_s = sessions[c.who, c.t] - sessions[c.who, c.t - 30]
        n_f = features[c.who, c.t] - features[c.who, c.t - 30]
        y.append(c.y)
        shallow.append(-np.log((n_f + 1) / (n_s + 1)))
        volume.append(-np.log(n_s + n_f + 1))
    target = np.concatenate(y)
    assert target.sum() > 150
    assert roc_auc(target, np.concatenate(shallow)) > 0.70  # 0.75 measured
    assert abs(roc_auc(target, np.concatenate(volume)) - 0.5) < 0.06  # 0.51 measured
    truth = sim.ground_truth()
    assert (truth["churn_driver"] == "shallow_use").sum() > 0.6 * truth["churned"].sum()
    names = {r["event_type"] for r in sim.iter_events()}
    assert names <= set(APP_VOCABULARY) and "app_open" in names and "session" not in names


def test_churn_of_a_tied_customer_raises_risk() -> None:
    cfg = _world("social")
    engine = Engine(cfg)
    messages = 0
    for batch in engine.run():
        messages += int((batch.events.etype == s.MESSAGE).sum())
    assert engine.world is not None
    indptr, neighbour = engine.world.ties
    owner = np.repeat(np.arange(cfg.n_customers), np.diff(indptr))
    truth = engine.truth([f"c{i}" for i in range(cfg.n_customers)])
    churn = _day(s.to_epoch_ms(truth["churn_ts"]), cfg)
    join = _day(s.to_epoch_ms(truth["join_ts"]), cfg)
    y, exposed = [], []
    for t in OBS_DAYS:
        who = np.flatnonzero((join <= t - 28) & (churn >= t))
        recent = ((churn[neighbour] >= t - 30) & (churn[neighbour] < t)).astype(np.float64)
        count = np.bincount(owner, weights=recent, minlength=cfg.n_customers)
        y.append((churn[who] < t + 30).astype(np.int8))
        exposed.append(count[who])
    target, driver = np.concatenate(y), np.concatenate(exposed)
    relative_risk = target[driver > 0].mean() / target[driver == 0].mean()
    assert relative_risk > 2.5  # 3.7 measured
    assert roc_auc(target, driver) > 0.56  # 0.60 measured (10 % of customers exposed)
    assert messages > 0.15 * engine.outcomes.daily_frame()["events"].sum()


def test_price_shocks_drive_churn() -> None:
    cfg = _world("price-shock")
    sim = simulate(cfg)
    notices = s.PropertyTable(cfg.plans).change_codes[s.PRICE_INCREASE].ravel()
    notified = daily_counts(sim, (sim.events.etype == s.PLAN_CHANGE)
                            & np.isin(sim.events.prop, notices[notices >= 0]))
    y, shocked = [], []
    for c in cohorts(sim, OBS_DAYS):
        y.append(c.y)
        shocked.append(notified[c.who, c.t] - notified[c.who, c.t - 45] > 0)
    target, hit = np.concatenate(y), np.concatenate(shocked)
    assert target[hit].mean() > 2.0 * target[~hit].mean()
    truth = sim.ground_truth()
    assert (truth["churn_driver"] == "price_increase").sum() > 0.4 * truth["churned"].sum()


def test_seasons_move_churn_and_activity_in_opposite_directions() -> None:
    mech = Mechanisms(season_churn=0.5, season_activity=0.3)
    sim = simulate(SimulationConfig(seed=5, n_customers=2000, days=365, mechanisms=mech))
    daily = sim.daily
    doy = np.arange(365) + 1  # the run starts on 1 January
    peak = (np.abs(doy - 15) <= 45) | (doy >= 335)
    trough = np.abs(doy - 197) <= 45

    def churn_rate(m: npt.NDArray[np.bool_]) -> float:
        return float(daily["churns"][m].sum() / daily["eligible"][m].sum())

    def activity(m: npt.NDArray[np.bool_]) -> float:
        return float((daily["session"][m].sum() + daily["feature_use"][m].sum())
                     / daily["active"][m].sum())

    assert churn_rate(peak) > 1.8 * churn_rate(trough)  # 2.5 measured
    assert activity(trough) > 1.4 * activity(peak)  # 1.74 measured


def test_noisy_labels_drop_delay_and_invent_churns() -> None:
    cfg = _world("noisy-labels")
    sim = simulate(cfg)
    truth = sim.ground_truth()
    churn_ms = s.to_epoch_ms(truth["churn_ts"])
    label_c, label_ms = sim.labels.customer, sim.labels.ts_ms
    delay_days = (label_ms - churn_ms[label_c]) / s.MS_PER_DAY
    true_label = (churn_ms[label_c] >= 0) & (delay_days >= 0) & (delay_days <= 10)
    spurious = ~true_label
    # every real churn more than 10 days before the end could have been labelled
    end = s.midnight_ms(cfg.start) + cfg.days * s.MS_PER_DAY
    labelled = np.zeros(cfg.n_customers, bool)
    labelled[label_c[true_label]] = True
    eligible = (churn_ms >= 0) & (churn_ms < end - 10 * s.MS_PER_DAY)
    dropped = 1.0 - labelled[eligible].mean()
    assert 0.18 < dropped < 0.32  # 25 % configured
    assert 3.5 < delay_days[true_label].mean() < 6.5  # uniform over 0-10 days
    assert 0.08 < spurious.sum() / eligible.sum() < 0.25  # 15 % configured
    # spurious churners stay: they go on emitting events after their label
    after = [bool(((sim.events.customer == c) & (sim.events.ts_ms > t)).any())
             for c, t in zip(label_c[spurious][:40].tolist(), label_ms[spurious][:40].tolist(),
                             strict=True)]
    assert np.mean(after) > 0.8


def test_cli_simulate_scenario_writes_that_world(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli.main import main

    code = main(["simulate", "--scenario", "mix", "--customers", "60", "--days", "20",
                 "--seed", "9", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    types = {json.loads(line)["event_type"]
             for line in (tmp_path / "events.jsonl").read_text().splitlines()}
    assert "app_open" in types and types <= set(APP_VOCABULARY)
    direct = tmp_path / "direct"
    run_to_files(scenario("mix").apply(SimulationConfig(seed=9, n_customers=60, days=20)),
                 direct)
    assert (tmp_path / "events.jsonl").read_bytes() == (direct / "events.jsonl").read_bytes()
    assert "churn labels" in capsys.readouterr().out
