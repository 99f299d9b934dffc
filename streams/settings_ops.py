"""Settings of operability: Prometheus metrics, health endpoints, log format.

``CHURN_METRICS__ENABLED=false`` turns every metric call into a no-op and serves nothing (the
benchmark's "without metrics"); ``CHURN_METRICS__WORKER_PORT`` (and ``LEARNER_``, ``ALERTER_``,
``DISPATCH_``, ``DASHBOARD_``, ``RETENTION_``) choose where each process serves
``/metrics``, ``/healthz`` and ``/readyz`` (0 = that process serves none). Several processes
of one kind on one host need one port each. ``CHURN_LOG__FORMAT=json`` writes one JSON object
per log line.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROCESSES = ("worker", "learner", "alerter", "dispatch", "dashboard", "retention")


class MetricsSettings(BaseModel):
    """Where each process serves its metrics and health (see docs/operations.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="Collect and serve metrics (false: no-op calls).")
    host: str = Field("127.0.0.1", description="Interface of the metrics server (0.0.0.0 in "
                                               "a container).")
    worker_port: int = Field(9410, ge=0, le=65535)
    learner_port: int = Field(9411, ge=0, le=65535)
    alerter_port: int = Field(9412, ge=0, le=65535)
    dispatch_port: int = Field(9413, ge=0, le=65535)
    dashboard_port: int = Field(9414, ge=0, le=65535)
    retention_port: int = Field(9415, ge=0, le=65535)
    ready_timeout_s: float = Field(2.0, gt=0, description="Time each /readyz check may take.")
    prometheus_port: int = Field(9090, ge=1, le=65535,
                                 description="Port of `churnpulse services up prometheus`.")
    scrape_interval_s: float = Field(5.0, gt=0, description="Its scrape and rule interval.")

    def port(self, process: str) -> int:
        """The port of ``process`` (one of :data:`PROCESSES`); 0 when disabled."""
        if process not in PROCESSES:
            raise ValueError(f"unknown process {process!r}")
        return int(getattr(self, f"{process}_port")) if self.enabled else 0


class LogSettings(BaseModel):
    """How processes log: ``text`` (one line) or ``json`` (one object per line)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["text", "json"] = Field("text", description="text or json.")
