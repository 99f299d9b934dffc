"""Uplift statistics, outcome resolution, and recovering a known effect from the simulator."""

from __future__ import annotations

import json
import random
from pathlib import Path

import orjson
import pytest

from alerts.enrich import AlertConfig
from alerts.uplift import Decision, Label, compare, newcombe, relative_risk, resolve, wilson
from streams.cli.alerts import NOT_ENOUGH, decisions_from, labels_from
from streams.cli.main import main
from streams.simulator import SimulationConfig, simulate
from streams.simulator.treatment import TreatmentConfig, run_treated

DAY = 86400.0


def test_resolution_window_first_decision_and_clock() -> None:
    decisions = [Decision("a", 10 * DAY, False), Decision("a", 2 * DAY, False),  # first: day 2
                 Decision("b", 0.0, True), Decision("c", 50 * DAY, False)]
    labels = [Label("a", 20 * DAY, True),      # inside (2, 32]
              Label("b", 31 * DAY, True),      # outside (0, 30]
              Label("x", 40 * DAY, True)]      # moves the clock to day 40
    out = {o.customer_id: o for o in resolve(decisions, labels, 30 * DAY)}
    assert out["a"].churned is True and out["a"].t0 == 2 * DAY
    assert out["b"].churned is False          # day 40 >= 30: the horizon passed, no churn
    assert out["c"].churned is None           # day 40 < 80: not resolved yet
    assert resolve(decisions, labels, 30 * DAY, as_of=100 * DAY)[-1].churned is False


def test_wilson_and_newcombe_cover_at_the_nominal_rate() -> None:
    rng = random.Random(1)
    hits_w = hits_n = 0
    trials = 2000
    for _ in range(trials):
        x1 = sum(rng.random() < 0.1 for _ in range(200))
        x2 = sum(rng.random() < 0.2 for _ in range(60))
        lo, hi = wilson(x1, 200)
        hits_w += lo <= 0.1 <= hi
        _, lo, hi = newcombe(x1, 200, x2, 60)
        hits_n += lo <= -0.1 <= hi
    assert 0.93 <= hits_w / trials <= 0.975
    assert 0.93 <= hits_n / trials <= 0.975


def test_relative_risk_needs_events_and_compare_needs_both_arms() -> None:
    assert relative_risk(0, 10, 3, 10) is None
    with pytest.raises(ValueError, match="no resolved"):
        compare(resolve([Decision("a", 0.0, False)], [Label("a", 1.0, True)], DAY))


def _report(effect: float, seed: int = 3) -> tuple[float, float, float]:
    run = run_treated(SimulationConfig(n_customers=4000, days=150, seed=seed),
                      TreatmentConfig(effect=effect, alerts=AlertConfig(holdout_share=0.3)))
    decisions, bad_a = decisions_from(orjson.dumps(a) for a in run.actions)
    labels, bad_l = labels_from(orjson.dumps(x) for x in run.labels)
    assert bad_a == bad_l == 0
    rr = compare(resolve(decisions, labels, 30 * DAY)).relative_risk
    assert rr is not None
    return rr


def test_a_known_effect_is_recovered_within_the_interval() -> None:
    rr, lo, hi = _report(effect=0.5)
    assert rr < 0.8
    assert lo <= 0.5 <= hi and hi < 1.0      # the true relative risk is 1 - effect


def test_no_effect_gives_an_interval_around_one() -> None:
    rr, lo, hi = _report(effect=0.0)
    assert 0.8 < rr < 1.25
    assert lo <= 1.0 <= hi


def test_without_effect_the_treated_simulator_is_the_plain_simulator() -> None:
    config = SimulationConfig(n_customers=800, days=60, seed=5)
    run = run_treated(config, TreatmentConfig(effect=0.0))
    assert run.labels == list(simulate(config).iter_labels())
    assert run.saved == 0 and run.treated > 0


def test_report_uplift_command_on_files(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    run = run_treated(SimulationConfig(n_customers=3000, days=120, seed=2),
                      TreatmentConfig(effect=0.6, alerts=AlertConfig(holdout_share=0.3)))
    paths = run.write(tmp_path)
    args = ["report", "uplift", "--actions", str(paths["actions"]), "--labels",
            str(paths["labels"]), "--horizon-days", "30", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "ok" and out["significant"] is True
    assert out["ci_high"] < 0 < out["holdout"]["churn_rate"]
    assert main([*args, "--min-resolved", "100000"]) == NOT_ENOUGH
    waiting = json.loads(capsys.readouterr().out)
    assert waiting["status"] == "not_enough_data" and "not enough resolved" in waiting["message"]
    assert main(args[:-1]) == 0
    assert "difference (actioned - holdout)" in capsys.readouterr().out
