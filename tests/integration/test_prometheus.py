"""A real Prometheus (Debian's package) scraping a running pipeline: worker, learner, alerter,
dispatch and dashboard as processes on the real broker and Redis, fed by the simulator.

Prometheus runs on a free port with its own data directory, scraping every second, with the
alerting rules of deploy/prometheus/rules.yml (``for:`` shortened to 0 s so that a test need
not wait minutes). Everything is checked through Prometheus's HTTP API.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from streams.services.prometheus import ensure_binary, server_args
from streams.simulator import SimulationConfig, simulate, write_files
from tests.integration.alerter_proc import alert_env, crafted_scores, publish
from tests.integration.worker_proc import Pipeline, stop_procs, wait_until
from tests.ports import free_port

pytestmark = pytest.mark.integration
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"
PROCESSES = ("worker", "learner", "alerter", "dispatch", "dashboard")
MALFORMED = 200
TOKEN = "prometheus-test-token-0123"


@dataclass
class Running:
    pipeline: Pipeline
    prometheus: str  # http://127.0.0.1:<port>
    ports: dict[str, int]
    events: int

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = orjson.loads(response.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else float("nan")

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.prometheus + path, timeout=10) as response:
            return orjson.loads(response.read())["data"]


def start(p: Pipeline, env: dict[str, str],
          commands: dict[str, tuple[list[str], bytes]]) -> None:
    """Start every ``name: (args, ready line)`` at once (their start-ups overlap), then wait
    until each is ready."""
    started = []
    for name, (args, ready) in commands.items():
        log = p.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "streams.cli", *args], env=env,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        p.procs.append(proc)
        started.append((name, ready, log, proc))
    for name, ready, log, proc in started:
        wait_until(lambda r=ready, f=log, q=proc: r in f.read_bytes()  # type: ignore[misc]
                   or q.poll() is not None, 90, f"{name} up")
        assert proc.poll() is None, log.read_text(errors="replace")


def start_prometheus(workdir: Path, ports: dict[str, int]) -> tuple[subprocess.Popen[bytes], str]:
    rules = workdir / "rules.yml"
    rules.write_text(re.sub(r"for: \S+", "for: 0s", RULES.read_text()))  # fire at once
    targets = "\n".join(f"  - job_name: churnpulse-{name}\n"
                        f'    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]'
                        for name, port in ports.items())
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                      f'rule_files: ["{rules}"]\nscrape_configs:\n{targets}\n')
    port = free_port()
    (workdir / "tsdb").mkdir()
    with (workdir / "prometheus.log").open("wb") as out:
        proc = subprocess.Popen(server_args(ensure_binary(), config, workdir / "tsdb", port),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=1) as r:
                return int(r.status) == 200
        except OSError:
            return proc.poll() is not None

    wait_until(ready, 60, "prometheus ready")
    assert proc.poll() is None, (workdir / "prometheus.log").read_text(errors="replace")
    return proc, url


def feed(p: Pipeline, workdir: Path) -> int:
    """Simulated events and labels, malformed events, and scores that alert; returns the
    number of event records sent."""
    write_files(simulate(SimulationConfig(seed=11, n_customers=120, days=20,
                                          churn_base_rate=0.25)), workdir / "sim", "jsonl")
    producer = KafkaProducer(bootstrap_servers=p.bootstrap, linger_ms=5)
    sent = 0
    labels_topic = f"labels-{p.tag}"
    for name, topic in (("events", p.events), ("labels", labels_topic)):
        for line in (workdir / "sim" / f"{name}.jsonl").read_bytes().splitlines():
            producer.send(topic, line, key=orjson.loads(line)["customer_id"].encode())
            sent += name == "events"
    for i in range(MALFORMED):  # dead letters: well above 1 % of what the worker reads
        producer.send(p.events, b"{not json " + str(i).encode(), key=f"bad-{i}".encode())
    producer.flush()
    producer.close()
    publish(p.bootstrap, p.scores, crafted_scores(customers=30, per_customer=8, seed=3))
    return sent + MALFORMED


def scraped_before_traffic(r: Running) -> bool:
    """Every process scraped, and the worker's consumed-records series scraped at 0 (it owns
    its partitions), so the traffic fed after this is an increase to ``rate()``, as in a
    long-running deployment. Fed earlier, a worker can read all of it before its first scrape:
    CI at 4afb00d saw both its series' first samples at their final values, so both rates were 0
    and the worker's ChurnpulseDeadLettersHigh never fired."""
    up = {s["metric"]["job"]: s["value"][1] for s in r.query('up{job=~"churnpulse-.*"}')}
    if up != {f"churnpulse-{name}": "1" for name in PROCESSES}:
        return False
    consumed = r.query('churnpulse_records_consumed_total{job="churnpulse-worker"}')
    return bool(consumed) and all(float(s["value"][1]) == 0 for s in consumed)


@pytest.fixture(scope="module")
def running(kafka_bootstrap: str, redis_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("prometheus")
    p = Pipeline(kafka_bootstrap, redis_url, workdir)
    ports = {name: free_port() for name in PROCESSES}
    env = alert_env(p)
    env.update({f"CHURN_METRICS__{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env.update({
        "CHURN_WEBHOOK__TARGETS": orjson.dumps([{  # nobody listens: deliveries fail
            "name": "crm", "url": f"http://127.0.0.1:{free_port()}/hook",
            "secret": "s" * 32, "timeout_s": 1.0, "allow_insecure_http": True}]).decode(),
        "CHURN_WEBHOOK__MAX_ATTEMPTS": "2", "CHURN_WEBHOOK__BACKOFF_BASE_S": "0.05",
        "CHURN_WEBHOOK__BACKOFF_MAX_S": "0.1",
        "CHURN_WEBHOOK__CONSUMER_GROUP": f"dispatch-{p.tag}",
        "CHURN_DASHBOARD__TOKENS": orjson.dumps({"ops": TOKEN}).decode(),
        "CHURN_MODEL__POLL_S": "1",
    })
    prom: subprocess.Popen[bytes] | None = None
    try:
        prom, url = start_prometheus(workdir, ports)
        start(p, env, {"worker": (["worker"], b"[^Worker]: Ready"),
                       "learner": (["learner"], b"learner ready"),
                       "alerter": (["alerter"], b"alerter ready"),
                       "dispatch": (["dispatch"], b"dispatching"),
                       "dashboard": (["dashboard", "--port", "0"], b"listening on")})
        r = Running(p, url, ports, 0)
        wait_until(lambda: scraped_before_traffic(r), 90,
                   "every process scraped, the worker's consumed series at 0", interval_s=0.5)
        yield replace(r, events=feed(p, workdir))
    finally:
        p.close()
        if prom is not None:
            stop_procs([prom])


def test_every_process_is_scraped_and_ready_and_the_key_series_move(running: Running) -> None:
    r = running

    def all_up() -> bool:
        up = {s["metric"]["job"]: s["value"][1] for s in r.query('up{job=~"churnpulse-.*"}')}
        return up == {f"churnpulse-{name}": "1" for name in PROCESSES}

    wait_until(all_up, 90, "every churnpulse process scraped with up == 1", interval_s=1.0)
    for name, port in r.ports.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert orjson.loads(resp.read())["process"] == name

    moving = {  # what the simulator's traffic must move, as seen by Prometheus
        'sum(churnpulse_records_consumed_total{job="churnpulse-worker"})': r.events,
        'churnpulse_scores_total{job="churnpulse-worker"}': 1,
        'churnpulse_event_to_score_seconds_count{job="churnpulse-worker"}': 1,
        'sum(churnpulse_redis_call_duration_seconds_count{operation="feature_apply"})': 1,
        'count(churnpulse_consumer_lag_records{job="churnpulse-worker"})': 1,
        'count(churnpulse_watermark_lag_seconds{job="churnpulse-worker"})': 1,
        'sum(churnpulse_records_produced_total{job="churnpulse-worker"})': 1,
        'sum(churnpulse_records_consumed_total{job="churnpulse-alerter"})': 240,
        'sum(churnpulse_alerts_total{job="churnpulse-alerter"})': 1,
        'sum(churnpulse_learner_labels_total{outcome="labels"})': 1,
        'churnpulse_label_lag_seconds_count{job="churnpulse-learner"}': 1,
        'churnpulse_learner_steps_total{job="churnpulse-learner"}': 2,
        'sum(churnpulse_webhook_deliveries_total{job="churnpulse-dispatch",status="dead"})': 1,
        'sum(churnpulse_webhook_retries_total{job="churnpulse-dispatch"})': 1,
        'count(churnpulse_dashboard_sessions{job="churnpulse-dashboard"})': 1,
    }
    reached: dict[str, float] = {}

    def moved() -> bool:
        for expr, least in moving.items():
            if expr not in reached and r.value(expr) >= least:
                reached[expr] = r.value(expr)
        return len(reached) == len(moving)

    try:
        wait_until(moved, 180, "the key series to move", interval_s=1.0)
    finally:
        print("\n".join(f"{expr} = {reached.get(expr, 'not reached')}" for expr in moving))
    for name, port in r.ports.items():  # every process ready (200) once traffic flowed
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            assert resp.status == 200, name


def firing(r: Running, alertname: str) -> list[dict[str, Any]]:
    return [a for a in r.api("/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


def test_dead_letter_and_webhook_rules_fire(running: Running,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    r = running
    def worker_dead_letters() -> bool:  # dispatch's may fire first (CI at ad9287a)
        return any(a["labels"]["job"] == "churnpulse-worker"
                   for a in firing(r, "ChurnpulseDeadLettersHigh"))

    wait_until(worker_dead_letters, 180, "ChurnpulseDeadLettersHigh firing for the worker",
               interval_s=1.0)
    wait_until(lambda: bool(firing(r, "ChurnpulseWebhookFailures")), 120,
               "ChurnpulseWebhookFailures firing", interval_s=1.0)
    dead = firing(r, "ChurnpulseDeadLettersHigh")
    assert {a["labels"]["job"] for a in dead} >= {"churnpulse-worker"}
    worker = next(a for a in dead if a["labels"]["job"] == "churnpulse-worker")
    assert float(worker["value"]) > 0.01
    reasons = {s["metric"]["reason"] for s in
               r.query('churnpulse_records_dead_lettered_total{job="churnpulse-worker"}')}
    assert "bad_json" in reasons
    hooks = firing(r, "ChurnpulseWebhookFailures")
    assert {a["labels"]["target"] for a in hooks} == {"crm"}
    with capsys.disabled():
        for a in dead + hooks:
            print(f"\nfiring: {a['labels']['alertname']} {dict(a['labels'])} "
                  f"value={a['value']}")


def test_target_down_fires_when_a_process_dies(running: Running,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    r = running
    dashboard = r.pipeline.procs[-1]  # started last
    os.killpg(dashboard.pid, signal.SIGKILL)
    dashboard.wait()
    wait_until(lambda: bool(firing(r, "ChurnpulseTargetDown")), 60,
               "ChurnpulseTargetDown firing", interval_s=1.0)
    down = firing(r, "ChurnpulseTargetDown")
    assert {a["labels"]["job"] for a in down} == {"churnpulse-dashboard"}
    assert r.value('up{job="churnpulse-worker"}') == 1
    with capsys.disabled():
        print(f"\nfiring: ChurnpulseTargetDown {dict(down[0]['labels'])} "
              f"value={down[0]['value']}")


def test_services_up_prometheus_scrapes_the_local_ports_then_stops(tmp_path: Path) -> None:
    from streams.services import manager, prometheus
    from streams.settings import load_settings

    port = free_port()
    settings = load_settings(services={"state_dir": tmp_path / "state"},
                             metrics={"prometheus_port": port, "worker_port": 19410,
                                      "dashboard_port": 0})
    started = manager.optional("up", "prometheus", settings)
    try:
        assert started.state == "started", started
        assert prometheus.probe(port)
        assert manager.optional("status", "prometheus", settings).state == "running-ours"
        again = manager.optional("up", "prometheus", settings)
        assert (again.state, again.pid) == ("running-ours", started.pid)
        r = Running(Pipeline("", "", tmp_path), f"http://127.0.0.1:{port}", {}, 0)
        targets: dict[str, str] = {}

        def discovered() -> bool:
            targets.update({t["labels"]["job"]: t["scrapeUrl"]
                            for t in r.api("/api/v1/targets")["activeTargets"]})
            return len(targets) == 5  # worker, learner, alerter, dispatch, retention

        wait_until(discovered, 30, "the local targets", interval_s=0.5)
        assert targets["churnpulse-worker"] == "http://127.0.0.1:19410/metrics"
        assert targets["churnpulse-retention"].endswith(":9415/metrics")
        assert "churnpulse-dashboard" not in targets  # port 0: nothing to scrape
        groups = r.api("/api/v1/rules")["groups"]
        assert len(groups[0]["rules"]) == 8
    finally:
        stopped = manager.down(settings)[0]  # `services down` stops our Prometheus too
    assert (stopped.name, stopped.state, stopped.pid) == ("prometheus", "stopped", started.pid)
    assert not prometheus.probe(port)
