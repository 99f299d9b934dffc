"""docker-compose health checks, the compose Prometheus config and the Grafana dashboard agree
with the code: the ports each process serves, the metrics it exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from streams.settings_ops import PROCESSES, MetricsSettings

ROOT = Path(__file__).resolve().parents[2]
CODE = "\n".join(p.read_text() for p in (ROOT / "streams" / "observability").glob("*.py"))


def load(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


def exported(name: str) -> bool:
    return f'"{re.sub(r"_(total|bucket|count|sum)$", "", name)}' in CODE


def test_each_process_container_is_healthy_when_its_readyz_answers() -> None:
    services = load("docker-compose.yml")["services"]
    defaults = MetricsSettings()
    for process in PROCESSES:
        check = " ".join(services[process]["healthcheck"]["test"])
        assert f"127.0.0.1:{defaults.port(process)}/readyz" in check, process
    assert services["worker"]["environment"]["CHURN_METRICS__HOST"] == "0.0.0.0"


def test_compose_prometheus_scrapes_every_process_on_its_port() -> None:
    services = load("docker-compose.yml")["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    config = load("deploy/prometheus/prometheus.yml")
    assert config["rule_files"] == ["rules.yml"]
    jobs = {job["job_name"]: job["dns_sd_configs"][0] for job in config["scrape_configs"]}
    defaults = MetricsSettings()
    assert set(jobs) == {f"churnpulse-{p}" for p in PROCESSES}
    for process in PROCESSES:
        sd = jobs[f"churnpulse-{process}"]
        assert sd["names"] == [process]
        assert sd["port"] == defaults.port(process)


def test_grafana_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "churnpulse.json").read_text())
    source = load("deploy/grafana/provisioning/datasources/prometheus.yml")["datasources"][0]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    names: set[str] = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"]
        for target in panel["targets"]:
            names |= set(re.findall(r"churnpulse_[a-z_]+", target["expr"]))
    missing = sorted(n for n in names if not exported(n))
    assert not missing, missing
    assert len(names) >= 25  # the dashboard covers the metric list, not a sample of it
