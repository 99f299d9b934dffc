"""Running real ``churnpulse alerter`` processes on crafted scores (integration tests); the
processes and the crafted scores are :mod:`streams.dev.pipeline` and :mod:`streams.dev.crafted`
(shared with ``bench/``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson

from streams.dev.crafted import T0, complaint_model, crafted_scores, expected_alert_ids, publish
from streams.dev.pipeline import ALERTER_READY, Pipeline, kill
from streams.kafka.topic_reader import read_topic_sync
from streams.settings import load_settings

__all__ = [
    "ALERTER_READY",
    "T0",
    "alert_env",
    "committed",
    "complaint_model",
    "crafted_scores",
    "expected_alert_ids",
    "kill",
    "publish",
    "start_alerter",
    "workdir_log",
]


def alert_env(p: Pipeline) -> dict[str, str]:
    return p.alert_env()


def start_alerter(p: Pipeline, timeout_s: float = 60.0) -> subprocess.Popen[bytes]:
    return p.start_alerter(timeout_s)


def committed(p: Pipeline, topic: str, timeout_s: float = 60.0) -> list[dict[str, object]]:
    settings = load_settings(kafka={"bootstrap_servers": p.bootstrap})
    return [orjson.loads(v) for _, v in read_topic_sync(settings, topic, timeout_s) if v]


def workdir_log(p: Pipeline, name: str) -> str:
    return (Path(p.workdir) / name).read_text(errors="replace")
