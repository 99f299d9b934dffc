"""Issue 16 in operation, on the real Kafka and Redis: ``churnpulse retention`` answers /healthz
at once, /readyz once it holds the lock and owns its inputs, and its /metrics count the actions
read (with offers, by the learning policy, holdout), the outcomes joined and the refused inputs;
a second process waiting for the lock is live but not ready."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.dev.crafted import publish
from streams.dev.pipeline import Pipeline, wait_until
from streams.timefmt import format_ts

pytestmark = pytest.mark.integration
T0 = 1_767_225_600.0  # 2026-01-01
DAY = 86400.0
N = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status), bytes(r.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except OSError:
        return 0, b""


def _samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    _, body = _get(port, "/metrics")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(body.decode()) for s in f.samples
            if s.name.startswith("churnpulse_retention_")}


def _action(i: int) -> tuple[str, bytes]:
    cid = f"c-{i:03d}"
    holdout = i % 4 == 0
    rec: dict[str, object] = {
        "action_id": f"{cid}:0:high", "customer_id": cid, "holdout": holdout,
        "action": "none (holdout)" if holdout else "personal check-in email",
        "recommended_action": "personal check-in email", "severity": "high",
        "driver_category": "engagement", "segment": "fading", "ts": format_ts(T0 + i * 60)}
    if i % 2:
        rec["offers"] = ["free_month", "discount_20"]
    if i % 4 == 1:
        rec["policy"] = {"context": "fading|engagement", "explored": i % 8 == 1}
    return cid, orjson.dumps(rec)


def test_retention_process_health_readiness_and_counts(kafka_bootstrap: str, redis_url: str,
                                                       tmp_path: Path) -> None:
    p = Pipeline(kafka_bootstrap, redis_url, tmp_path)
    port, second_port = _free_port(), _free_port()
    env = {**p.alert_env(), "CHURN_RETENTION__OUTCOMES_TOPIC": f"rout-{p.tag}",
           "CHURN_RETENTION__HORIZON_DAYS": "30", "CHURN_RETENTION__CHECKPOINT_S": "0.3",
           "CHURN_SECURITY__SIGNING_KEY": "retention-health-test-" + "k" * 16,
           "CHURN_METRICS__RETENTION_PORT": str(port)}
    try:
        p.start("retention", env, b"retention ready")
        assert _get(port, "/healthz")[0] == 200
        wait_until(lambda: _get(port, "/readyz")[0] == 200, 30, "/readyz 200")
        checks = orjson.loads(_get(port, "/readyz")[1])["checks"]
        assert checks == {"lock": "ok", "partitions": "ok", "redis": "ok"}

        # a second process: live, waiting for the lock, not ready
        p.start("retention", {**env, "CHURN_METRICS__RETENTION_PORT": str(second_port)},
                b"/readyz on")
        assert _get(second_port, "/healthz")[0] == 200
        status, body = _get(second_port, "/readyz")
        assert status == 503
        assert orjson.loads(body)["checks"]["lock"].startswith("retention lock not held")

        publish(kafka_bootstrap, f"actions-{p.tag}",
                [_action(i) for i in range(N)] + [_action(0), ("c-bad", b"{not json")])
        churners = [i for i in range(N) if i % 5 == 1]
        labels = [(f"c-{i:03d}", orjson.dumps({
            "label_id": f"l-{i}", "customer_id": f"c-{i:03d}",
            "ts": format_ts(T0 + i * 60 + DAY), "churned": True})) for i in churners]
        publish(kafka_bootstrap, f"labels-{p.tag}", labels)

        def counted() -> bool:
            got = _samples(port)
            return got.get(("churnpulse_retention_outcomes_total",
                            (("outcome", "churned"),))) == len(churners)

        wait_until(counted, 60, "the churned outcomes in /metrics")
        got = _samples(port)
        assert got[("churnpulse_retention_actions_read_total", ())] == N
        assert got[("churnpulse_retention_actions_duplicate_total", ())] == 1
        assert got[("churnpulse_retention_actions_holdout_total", ())] == N // 4
        assert got[("churnpulse_retention_actions_with_offers_total", ())] == N // 2
        policy = [i for i in range(N) if i % 4 == 1]
        explored = [i for i in policy if i % 8 == 1]
        assert got[("churnpulse_retention_policy_decisions_total",
                    (("explored", "true"),))] == len(explored)
        assert got[("churnpulse_retention_policy_decisions_total",
                    (("explored", "false"),))] == len(policy) - len(explored)
        assert got[("churnpulse_retention_rewards_total", ())] == len(
            [i for i in churners if i % 4])
        assert got[("churnpulse_retention_input_errors_total",
                    (("reason", "action:bad_json"),))] == 1
        assert got[("churnpulse_retention_pending_actions", ())] == N - len(churners)
        assert _get(second_port, "/readyz")[0] == 503  # still waiting for the lock
    finally:
        p.close()
