"""``churnpulse model status`` reads the learner's status from Redis and prints it."""

from __future__ import annotations

import orjson
import pytest
import redis

from streams.cli import main as cli

pytestmark = pytest.mark.integration

STATUS = {
    "champion": "logreg", "version": 7, "resolved": 1200, "pending": 30, "learn_calls": 2400,
    "watermark": "2026-03-01T00:00:00.000+00:00", "updated_at": "2026-12-01T10:00:00.000+00:00",
    "served": {"roc_auc": 0.71, "log_loss": 0.4, "n": 1200, "positives": 40},
    "models": {"logreg": {"roc_auc": 0.8123, "n": 1200}, "hat": {"roc_auc": float("nan")}},
    "labels": {"labels": 50, "duplicates": 3}, "promotions": ["logreg"], "events": [],
}


def test_model_status_prints_the_metrics_table(redis_url: str, key_prefix: str,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CHURN_REDIS__URL", redis_url)
    monkeypatch.setenv("CHURN_REDIS__KEY_PREFIX", key_prefix)
    monkeypatch.setenv("COLUMNS", "120")
    client = redis.Redis.from_url(redis_url)
    assert cli.main(["model", "status"]) == 1
    assert "no learner has checkpointed yet" in capsys.readouterr().out
    client.set(f"{key_prefix}:learner:status",
               orjson.dumps(STATUS, option=orjson.OPT_SERIALIZE_NUMPY))
    try:
        assert cli.main(["model", "status"]) == 0
        out = capsys.readouterr().out
        assert "model 7-logreg" in out and "1,200 resolved" in out
        assert "logreg (champion)" in out and "0.8123" in out
        assert "duplicates 3" in out and "promotions: logreg" in out
        assert "None" not in out  # NaN metrics (stored as null) show as "-"
        assert cli.main(["model", "status", "--json"]) == 0
        assert orjson.loads(capsys.readouterr().out)["learn_calls"] == 2400
    finally:
        client.delete(f"{key_prefix}:learner:status")
