"""The Prometheus configuration in deploy/prometheus: promtool checks the rules and the config,
and runs the rules' unit tests (rules.test.yml: one firing case per alerting rule).

promtool comes with Debian's ``prometheus`` package, installed by the project's services code
when missing (:func:`streams.services.prometheus.ensure_binary`), as redis-server is.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from streams.services.prometheus import ensure_binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "prometheus"
CODE = ROOT / "streams" / "observability"


@pytest.fixture(scope="module")
def promtool() -> str:
    return ensure_binary("promtool")


def run(promtool: str, *args: str) -> str:
    res = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=DEPLOY,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout + res.stderr


def test_promtool_check_rules(promtool: str) -> None:
    out = run(promtool, "check", "rules", "rules.yml")
    assert "SUCCESS: 8 rules found" in out


def test_promtool_check_config(promtool: str) -> None:
    assert "SUCCESS" in run(promtool, "check", "config", "prometheus.yml")


def test_every_alerting_rule_fires_in_the_rule_unit_tests(promtool: str) -> None:
    assert "SUCCESS" in run(promtool, "test", "rules", "rules.test.yml")
    rules = {r["alert"] for g in yaml.safe_load((DEPLOY / "rules.yml").read_text())["groups"]
             for r in g["rules"]}
    tested = {t["alertname"] for case in
              yaml.safe_load((DEPLOY / "rules.test.yml").read_text())["tests"]
              for t in case["alert_rule_test"] if t.get("exp_alerts")}
    assert rules == tested


def test_rules_only_use_metrics_the_code_exports() -> None:
    code = "\n".join(p.read_text() for p in CODE.glob("*.py"))
    used = set(re.findall(r"churnpulse_[a-z_]+", (DEPLOY / "rules.yml").read_text()))
    for name in used:
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert f'"{base}' in code, f"{name} is used by a rule but no code exports it"
