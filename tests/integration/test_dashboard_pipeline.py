"""The alert side as it runs: scores → real ``churnpulse alerter`` → ``churn-alerts`` →
``churnpulse dispatch`` (signed webhooks) and ``churnpulse dashboard`` (headless chromium),
all as processes on the real broker and Redis."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from alerts.policy import PolicyParams
from alerts.routing import in_holdout
from streams.settings import load_settings
from tests.integration.alerter_proc import (
    alert_env,
    crafted_scores,
    expected_alert_ids,
    publish,
    start_alerter,
)
from tests.integration.cdp import chromium_page
from tests.integration.webhook_receiver import Receiver
from tests.integration.worker_proc import Pipeline, wait_until

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SECRET = b"pipeline-secret-0123456789"
TOKEN = "pipeline-token-0123456789"


@pytest.fixture
def pipeline(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, redis_url, tmp_path)
    yield p
    p.close()


def start(p: Pipeline, args: list[str], env: dict[str, str], ready: bytes,
          name: str) -> Path:
    log = p.workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", *args], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    p.procs.append(proc)
    wait_until(lambda: ready in log.read_bytes() or proc.poll() is not None, 60, f"{name} up")
    assert proc.poll() is None, log.read_text(errors="replace")
    return log


async def test_real_alerter_output_reaches_signed_webhooks_once_and_the_live_page(
        pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = crafted_scores(customers=40, per_customer=10, seed=5)
    everything = expected_alert_ids(records, PolicyParams())
    cfg = load_settings().alerts
    held = {a for a in everything
            if in_holdout(a.split(":")[0], cfg.holdout_share, cfg.holdout_salt)}
    expected = [a for a in everything if a not in held]  # the holdout gets no action
    assert len(expected) >= 15 and held, "the input should alert, holdout customers too"
    receiver = await Receiver(SECRET).start()
    env = alert_env(pipeline)
    env.update({"CHURN_WEBHOOK__TARGETS": orjson.dumps([{"name": "crm", "url": receiver.url,
                                                          "secret": SECRET.decode(),
                                                          "allow_insecure_http": True}]).decode(),
                "CHURN_WEBHOOK__CONSUMER_GROUP": f"dispatch-{pipeline.tag}",
                "CHURN_DASHBOARD__TOKENS": orjson.dumps({"sam": TOKEN}).decode()})
    try:
        await asyncio.to_thread(start_alerter, pipeline)
        await asyncio.to_thread(start, pipeline, ["dispatch"], env, b"dispatching", "dispatch")
        dash_log = await asyncio.to_thread(start, pipeline, ["dashboard", "--port", "0"], env,
                                           b"listening on", "dashboard")
        url = re.search(r"listening on (http://\S+)", dash_log.read_text())
        assert url
        async with chromium_page(tmp_path / "chromium") as page:
            await page.goto(f"{url.group(1)}?token={TOKEN}")
            await page.wait_for("document.querySelector('#live').textContent === 'live'",
                                "the live connection")
            await asyncio.to_thread(publish, pipeline.bootstrap, pipeline.scores, records)
            alerted = len({a.split(":")[0] for a in expected})
            shown = min(50, len(expected))
            await page.wait_for(
                f"document.querySelectorAll('#feed li[data-alert-id]').length === {shown}",
                "the real alerts in the live feed", timeout_s=60)
            await page.wait_for(f"document.querySelectorAll('#board tbody tr[data-customer]')"
                                f".length === {alerted}", "every alerted customer on the board")
            feed_ids = await page.js("[...document.querySelectorAll('#feed li')]"
                                     ".map(li => li.dataset.alertId)")
            assert set(feed_ids) <= set(expected)
            await page.js("document.querySelector('#board tbody tr').click()")
            await page.wait_for("!!document.querySelector('#chart path.line')", "the chart")
            await page.wait_for("document.querySelectorAll('#drivers li .text').length > 0",
                                "the alert's drivers")
            await page.screenshot(ARTIFACTS / "dashboard-pipeline.png")
            assert page.console == []
        deadline = time.monotonic() + 60
        while set(receiver.processed) != set(expected):
            assert time.monotonic() < deadline, (len(receiver.processed), len(expected))
            await asyncio.sleep(0.1)
    finally:
        await receiver.stop()
    assert receiver.bad_signatures == []
    assert set(receiver.accepted.values()) == {1}  # every real alert exactly once
    assert not held & set(receiver.attempts)  # and never a holdout customer's
    with capsys.disabled():
        print(f"\n{len(expected)} alerts (+{len(held)} holdout) from the real alerter: "
              "webhooks and page agree; "
              f"screenshot {ARTIFACTS / 'dashboard-pipeline.png'}")
