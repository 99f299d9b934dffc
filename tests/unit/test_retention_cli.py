"""Issue 16: the retention commands end to end on files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import orjson
import pytest

from streams.cli.main import main


def _write(path: Path, rows: list[dict[str, object]]) -> str:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return str(path)


def test_report_uplift_by_action_gives_each_actions_effect(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    rng = random.Random(2)
    actions, labels = [], []
    for i in range(3000):
        cid, holdout = f"c-{i}", rng.random() < 0.3
        action = "call" if i % 2 else "email"
        actions.append({"action_id": f"{cid}:0:high", "alert_id": f"{cid}:0:high",
                        "customer_id": cid, "holdout": holdout,
                        "action": "none (holdout)" if holdout else action,
                        "recommended_action": action, "driver_category": "engagement",
                        "severity": "high", "ts": "2026-03-01T00:00:00Z"})
        p = 0.3 if holdout else (0.1 if action == "call" else 0.3)
        if rng.random() < p:
            labels.append({"label_id": f"l-{i}", "customer_id": cid, "churned": True,
                           "ts": "2026-03-10T00:00:00Z"})
    labels.append({"label_id": "l-end", "customer_id": "zz", "churned": True,
                   "ts": "2026-06-01T00:00:00Z"})
    code = main(["report", "uplift", "--actions", _write(tmp_path / "a.jsonl", actions),
                 "--labels", _write(tmp_path / "l.jsonl", labels), "--horizon-days", "30",
                 "--by", "action", "--json"])
    assert code == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    cells = {tuple(c["key"]): c for c in lines[-1]["cells"]}
    call, email = cells[("call",)], cells[("email",)]
    assert call["ci_low"] <= -0.2 <= call["ci_high"] and call["ci_high"] < 0
    assert email["ci_low"] <= 0.0 <= email["ci_high"]
