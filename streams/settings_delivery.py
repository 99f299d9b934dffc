"""Settings of alert delivery: webhook targets and the dispatcher, the support dashboard.

Sections of :class:`streams.settings.Settings` (``CHURN_WEBHOOK__*``, ``CHURN_DASHBOARD__*``),
kept here so ``settings.py`` stays small; ``streams.settings`` re-exports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from alerts.webhooks import target_problem
from streams.settings_security import check_tokens


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WebhookTarget(_Section):
    """One webhook receiver (see docs/webhooks.md)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="Short name: in logs, dead-letter headers and Redis keys.")
    url: str = Field(pattern=r"^https?://", description="Where alerts are POSTed.")
    secret: SecretStr = Field(description="Shared HMAC-SHA256 secret of the signature.")
    min_severity: Literal["medium", "high", "critical"] = Field(
        "medium", description="Alerts below this severity are not sent to this target.")
    timeout_s: float = Field(5.0, gt=0, description="Timeout of one POST.")
    include_holdout: bool = Field(
        False, description="Also send alerts of holdout customers (who must get no action).")
    allow_insecure_http: bool = Field(
        False, description="Allow http:// to a receiver on localhost (tests); never otherwise.")

    @model_validator(mode="after")
    def _safe(self) -> WebhookTarget:
        problem = target_problem(self.url, self.secret.get_secret_value(),
                                 self.allow_insecure_http)
        if problem:
            raise ValueError(f"webhook target {self.name}: {problem}")
        return self


class WebhookSettings(_Section):
    """``churnpulse dispatch``: signed webhooks and the log sink (see docs/webhooks.md)."""

    targets: tuple[WebhookTarget, ...] = Field(
        (), description='JSON list, e.g. [{"name":"crm","url":"https://...","secret":"..."}].')
    consumer_group: str = Field("churnpulse.dispatch", description="Consumer group on alerts.")
    max_attempts: int = Field(6, ge=1, description="POSTs per alert and target before the"
                                                  " alert is dead-lettered.")
    backoff_base_s: float = Field(0.5, gt=0, description="Wait after the first failed POST;"
                                                          " doubles per attempt (jittered).")
    backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between two POSTs.")
    concurrency: int = Field(16, ge=1, description="Customers delivered to in parallel.")
    delivered_ttl_s: float = Field(
        7 * 86400.0, gt=0, description="How long delivered alert ids are remembered (Redis).")
    log_sink: bool = Field(True, description="Also write one log line per alert.")
    log_file: Path | None = Field(None, description="Append each alert as a JSON line here.")


class DashboardSettings(_Section):
    """``churnpulse dashboard``: the support web page (see docs/dashboard.md)."""

    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8765, ge=0, le=65535, description="HTTP port (0 = any free port).")
    tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='user -> access token, JSON, e.g. {"alice":"..."}; empty = one token is'
                    " generated for user 'support' and printed at start.")
    lookback_s: float = Field(
        3 * 86400.0, ge=0, description="At start, alerts and outcomes this old are read.")
    scores_lookback_s: float = Field(
        3600.0, ge=0, description="At start, scores this old are read (a busy topic).")
    history_points: int = Field(200, ge=2, description="Scores kept per customer for the chart.")
    history_customers: int = Field(
        20000, ge=1, description="Customers whose score history is kept (least recent dropped).")
    board_size: int = Field(5000, ge=1, description="Open alerts kept on the board.")
    cookie_secure: bool = Field(
        False, description="Always mark the session cookie Secure (behind a TLS proxy that "
                           "sends no X-Forwarded-Proto; with it, Secure is set anyway).")

    @field_validator("tokens")
    @classmethod
    def _long_tokens(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        return check_tokens(v)
