"""The one configuration object of churnpulse.

Every knob is read once, at the composition root (the CLI or the Faust app factory), from
environment variables with the prefix ``CHURN_`` and ``__`` between nested sections, e.g.::

    CHURN_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092
    CHURN_REDIS__URL=redis://127.0.0.1:6379/0
    CHURN_WORKER__BATCH_SIZE=1000

Kafka security (``CHURN_KAFKA__SECURITY_PROTOCOL``, ``__SASL_MECHANISM``, ``__SASL_USERNAME``,
``__SASL_PASSWORD``, ``__SSL_CAFILE``, ``__SSL_CERTFILE``, ``__SSL_KEYFILE``,
``__SSL_CHECK_HOSTNAME``) is described in :mod:`streams.settings_kafka`.

Two conventional variables are honoured as well, because tools and CI set them:
``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` (the ``CHURN_`` forms win when both are set).

The object is frozen: code receives the section it needs as an argument and never imports a
global. Secrets are :class:`pydantic.SecretStr` and print masked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from alerts.enrich import AlertConfig
from alerts.policy import PolicyParams
from alerts.routing import DEFAULT_RULES, RoutingTable
from online_models.features import FeatureSpec
from online_models.model_names import ModelName
from online_models.observations import LabelPolicy
from streams.settings_budget import AlertBudgetSettings
from streams.settings_delivery import DashboardSettings as DashboardSettings  # re-exported
from streams.settings_delivery import WebhookSettings as WebhookSettings  # re-exported
from streams.settings_delivery import WebhookTarget as WebhookTarget  # re-exported
from streams.settings_input import InputSettings
from streams.settings_kafka import KafkaSettings as KafkaSettings  # re-exported
from streams.settings_ops import LogSettings, MetricsSettings
from streams.settings_redis import RedisDurabilitySettings
from streams.settings_retention import RetentionSettings
from streams.settings_security import SecuritySettings, mask_urls


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TopicSettings(_Section):
    """Names of the topics of the pipeline (see README, "Topics")."""

    events: str = "customer-events"
    labels: str = "churn-labels"
    scores: str = "churn-scores"
    alerts: str = "churn-alerts"
    dead_letter: str = "churn-dead-letter"
    model_events: str = "churn-model-events"
    retention_actions: str = "retention-actions"
    alert_outcomes: str = "churn-alert-outcomes"


class RedisSettings(_Section, RedisDurabilitySettings):  # + WAIT_REPLICAS, WAIT_TIMEOUT_MS
    url: str = Field("redis://127.0.0.1:6379/0", description="redis:// URL of the feature store.")
    username: str | None = Field(None, description="ACL user (None: the URL's, else default).")
    password: SecretStr | None = None
    key_prefix: str = Field("cp", description="Prefix of every key the project writes.")
    socket_timeout_s: float = Field(5.0, gt=0)
    cluster: bool = Field(
        False, description="Redis Cluster: url names one seed node (a redis+cluster:// URL "
                           "selects it too); multi-customer calls are split by hash slot.")


class FeatureSettings(_Section):
    """What is computed per customer, and the bounds of its state (see docs/features.md)."""

    max_event_types: int = Field(
        32, ge=1, description="Distinct event types tracked per customer; others go to 'other'."
    )
    dedup_ids: int = Field(
        32, ge=1, le=4096,
        description="Most recent event ids remembered per customer (14 bytes each) to deduplicate;"
                    " an event older than one that left this ring is skipped as late.",
    )
    half_lives_days: tuple[float, ...] = Field(
        (1.0, 7.0, 30.0), min_length=1, description="Half-lives of decayed counts and sums (days).",
    )
    trend: tuple[float, float] = Field(
        (7.0, 30.0), description="(short, long) half-lives compared by the trend (percent change).",
    )
    ratios: tuple[tuple[str, str], ...] = Field(
        (("support_ticket", "session"),),
        description="(numerator, denominator) event types: ratio.<num>_per_<den> features.",
    )
    ratio_half_life_days: float = Field(30.0, description="Half-life the ratios are taken at.")
    active_day_windows: tuple[int, ...] = Field(
        (7, 30), description="Windows (days, at most 32) of the distinct-active-days features.",
    )
    retention_days: float = Field(
        400.0, ge=0,
        description="A customer's features expire this long after its last applied event "
                    "(Redis TTL; 0 = never).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSettings:
        self.spec  # noqa: B018 - raises ValueError when the parts do not fit together
        return self

    @property
    def spec(self) -> FeatureSpec:
        """The pure feature specification these settings describe."""
        return FeatureSpec(half_lives_days=self.half_lives_days, trend=self.trend,
                           ratios=self.ratios, ratio_half_life_days=self.ratio_half_life_days,
                           active_day_windows=self.active_day_windows,
                           max_types=self.max_event_types)


class SweepSettings(_Section):
    """Re-scoring customers who went quiet (see docs/features.md, "Quiet customers")."""

    enabled: bool = Field(True, description="Run the sweeper in the worker.")
    rescore_after_s: float = Field(
        86400.0, gt=0,
        description="Re-score a customer this long (event time) after its last event, then "
                    "again every as long while it stays quiet.",
    )
    clock: Literal["event", "wall", "auto"] = Field(
        "auto",
        description="event: a partition's sweep clock is its watermark only (replays); wall: "
                    "also the wall clock minus the allowed lateness (live); auto: wall when the "
                    "partition is idle and its events were live, else event.",
    )
    allowed_lateness_s: float = Field(
        300.0, ge=0, description="Watermark = newest event time of a partition minus this.",
    )
    interval_s: float = Field(5.0, gt=0, description="Wall seconds between sweep passes.")
    max_per_pass: int = Field(1000, ge=1, description="Customers re-scored per partition and pass.")
    idle_after_s: float = Field(
        30.0, gt=0, description="auto: a partition without events this long (wall) is idle.",
    )
    live_lag_s: float = Field(
        3600.0, gt=0,
        description="auto: events whose time was within this of the wall clock on arrival are "
                    "live.",
    )


class WorkerSettings(_Section):
    app_id: str = Field("churnpulse", description="Faust app id = Kafka consumer group.")
    batch_size: int = Field(
        2000, ge=1,
        description="Most events taken from the stream per batch (a backlog fills it; live "
                    "traffic makes smaller ones). 500 before 2026-12-02: 2,000 drains ~20 % "
                    "faster, see README 'Performance'.",
    )
    batch_within_s: float = Field(0.05, gt=0, description="Longest wait to fill a batch.")
    web_port: int = Field(0, ge=0, le=65535, description="Faust web port (0 = no web server).")
    session_timeout_s: float = Field(
        10.0, ge=6.0, description="Kafka group session timeout; short = fast recovery."
    )
    stall_timeout_s: float = Field(
        60.0, gt=0,
        description="A batch whose scores the broker has not acknowledged, or whose offsets "
                    "are not committed, this long after it was processed: the events consumer "
                    "replaces its Kafka clients and reads the uncommitted batches again.")
    commit_interval_s: float = Field(1.0, gt=0)
    data_dir: Path = Field(Path(".churnpulse/worker"), description="Faust's local data dir.")
    max_retries: int = Field(5, ge=0, description="Retries of a transient Redis/Kafka error.")


class ModelSettings(_Section):
    """Models and learning from delayed labels (see README "Learning")."""

    name: ModelName = Field("ensemble", description="Champion model (docs/learning.md).")
    challengers: tuple[ModelName, ...] = Field(
        ("logreg_robust", "svm"),
        description="Models that learn in shadow and may be promoted (docs/learning.md).")
    learning_rate: float = Field(
        0.001, gt=0,
        description="SGD step of the logreg model (weights and intercept). 0.001 beat 0.01 "
                    "on simulated years: served AUC +0.03 to +0.05 (docs/learning.md).")
    l2: float = Field(0.0, ge=0, description="L2 penalty of the logistic model.")
    horizon_days: float = Field(30.0, gt=0, description="A score predicts churn within this.")
    observation_interval_hours: float = Field(
        24.0, gt=0, description="At most one snapshot per customer per interval."
    )
    alert_threshold: float = Field(0.5, gt=0, lt=1, description="Precision/recall threshold.")
    metrics_window: int = Field(5000, ge=100, description="Resolved observations per metric.")
    promote_after: int = Field(2000, ge=1, description="Resolutions before a promotion.")
    promote_margin: float = Field(
        0.0, ge=0, description="Shadow AUC a challenger must gain, besides a significant "
                               "paired log-loss gain (docs/learning.md, Promotion).")
    poll_s: float = Field(2.0, gt=0, description="How often scorers check for a new version.")
    keep_versions: int = Field(5, ge=1, description="Model versions kept in the registry.")
    learner_metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus /metrics of the learner (0 = off)."
    )

    @property
    def policy(self) -> LabelPolicy:  # the pure label semantics these settings describe
        return LabelPolicy(self.horizon_days * 86400.0, self.observation_interval_hours * 3600.0)


class PolicyRule(_Section):
    """One row of the retention policy table (``*`` matches anything; first match wins)."""

    category: str = Field(description="Driver category: engagement, support, billing, tenure,"
                                      " unknown, or *.")
    severity: str = Field(description="medium, high, critical, or *.")
    value: str = Field(description="Customer value tier: low, mid, high, or *.")
    action: str
    team: str
    sla_hours: float = Field(gt=0)
    alternatives: tuple[str, ...] = Field((), description="Other actions a learning policy may "
                                          "choose for this row (docs/retention.md).")


def _default_rules() -> tuple[PolicyRule, ...]:
    return tuple(PolicyRule(category=r.category, severity=r.severity, value=r.value,
                            action=r.action, team=r.team, sla_hours=r.sla_hours,
                            alternatives=r.alternatives)
                 for r in DEFAULT_RULES)


class AlertSettings(_Section):
    """The alerter: risk state machine, routing and holdout (see docs/alerts.md)."""

    app_id: str | None = Field(None, description="Consumer group = <app_id>.alerts, "
                                                  "transactional ids derive from it (default: "
                                                  "worker.app_id).")
    enter: float = Field(0.6, gt=0, le=1, description="An episode opens at this score (medium).")
    exit: float = Field(0.45, ge=0, lt=1, description="...and closes below this (hysteresis).")
    high: float = Field(0.75, gt=0, le=1, description="Score of the high tier.")
    critical: float = Field(0.9, gt=0, le=1, description="Score of the critical tier.")
    min_dwell_s: float = Field(3600.0, ge=0, description="Event time an episode lasts before "
                                                          "it alerts.")
    min_scores: int = Field(2, ge=1, description="Scores an episode sees before it alerts.")
    cooldown_s: float = Field(7 * 86400.0, ge=0, description="No new episode alerts within "
                                                              "this of the previous alert.")
    critical_skips_dwell: bool = True
    critical_skips_cooldown: bool = True
    escalate: bool = Field(True, description="An alerted episode alerts again when it climbs a "
                                             "tier (under a budget that takes the room of a "
                                             "customer new to the team).")
    holdout_share: float = Field(0.1, ge=0, le=1, description="Customers who get no action "
                                                              "(the uplift control group).")
    holdout_salt: str = Field("", description="Change to re-draw the holdout (new experiment).")
    value_mid_from: float = Field(20.0, ge=0, description="Spend per month of the mid tier.")
    value_high_from: float = Field(100.0, ge=0, description="Spend per month of the high tier.")
    new_days: float = Field(30.0, ge=0, description="Lifecycle 'new' below this tenure.")
    returned_days: float = Field(30.0, ge=0, description="Lifecycle 'returned' this long.")
    policy_table: tuple[PolicyRule, ...] = Field(
        default_factory=_default_rules,
        description="Driver category x severity x customer value -> action, team, SLA (JSON "
                    "list in CHURN_ALERTS__POLICY_TABLE).")
    batch_size: int = Field(5000, ge=1, description="Scores per fetch (up to).")
    batch_within_s: float = Field(0.05, gt=0, description="Longest wait to fill a batch.")
    segment_share: float = Field(0.02, ge=0, le=1, description="Share of scores whose "
                                 "customer's features the behaviour segments learn from.")
    state_ttl_days: float = Field(400.0, ge=0, description="Alert state expires (0 = never).")
    budget: AlertBudgetSettings = AlertBudgetSettings()  # CHURN_ALERTS__BUDGET__MODE=budget ...

    @model_validator(mode="after")
    def _consistent(self) -> AlertSettings:
        self.config  # noqa: B018 - raises ValueError when thresholds or the table do not fit
        return self

    @property
    def config(self) -> AlertConfig:
        """The pure :class:`alerts.enrich.AlertConfig` these settings describe."""
        policy = PolicyParams(enter=self.enter, exit=self.exit, high=self.high,
                              critical=self.critical, min_dwell_s=self.min_dwell_s,
                              min_scores=self.min_scores, cooldown_s=self.cooldown_s,
                              critical_skips_dwell=self.critical_skips_dwell,
                              critical_skips_cooldown=self.critical_skips_cooldown,
                              escalate=self.escalate)
        return AlertConfig(policy=policy,
                           routing=RoutingTable.from_rows(r.model_dump()
                                                          for r in self.policy_table),
                           holdout_share=self.holdout_share, holdout_salt=self.holdout_salt,
                           value_mid_from=self.value_mid_from,
                           value_high_from=self.value_high_from, new_days=self.new_days,
                           returned_days=self.returned_days,
                           budget=self.budget.params(1))  # the alerter sets the partitions


class ServicesSettings(_Section):
    """Local services that ``churnpulse services up`` owns (no Docker needed)."""

    state_dir: Path = Field(
        Path(".churnpulse"), description="Pid files, logs and data of the services we start."
    )
    cache_dir: Path = Field(
        Path.home() / ".cache" / "churnpulse", description="Downloaded Kafka jars (reused)."
    )
    kafka_version: str = "3.9.1"
    kafka_scala_version: str = "2.13"
    kafka_heap: str = "768m"
    kafka_controller_port: int = 9093
    start_timeout_s: float = Field(90.0, gt=0)


class Settings(BaseSettings):
    """All of churnpulse's configuration. Build it once with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="CHURN_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    redis: RedisSettings = RedisSettings()
    features: FeatureSettings = FeatureSettings()
    sweep: SweepSettings = SweepSettings()
    worker: WorkerSettings = WorkerSettings()
    model: ModelSettings = ModelSettings()
    services: ServicesSettings = ServicesSettings()
    webhook: WebhookSettings = WebhookSettings()
    dashboard: DashboardSettings = DashboardSettings()
    alerts: AlertSettings = AlertSettings()
    retention: RetentionSettings = RetentionSettings()  # docs/retention.md
    input: InputSettings = InputSettings()
    security: SecuritySettings = SecuritySettings()
    metrics: MetricsSettings = MetricsSettings()  # CHURN_METRICS__WORKER_PORT ...
    log: LogSettings = LogSettings()  # CHURN_LOG__FORMAT=json
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment, plus explicit overrides (tests, CLI flags).

    Overrides are nested dicts and merge with the environment section by section.
    ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` fill in when the ``CHURN_`` forms are absent.

    >>> load_settings(worker={"batch_size": 7}).worker.batch_size
    7
    """
    env = os.environ
    kafka = dict(overrides.pop("kafka", {}))
    redis = dict(overrides.pop("redis", {}))
    if "CHURN_KAFKA__BOOTSTRAP_SERVERS" not in env and "KAFKA_BOOTSTRAP_SERVERS" in env:
        kafka.setdefault("bootstrap_servers", env["KAFKA_BOOTSTRAP_SERVERS"])
    if "CHURN_REDIS__URL" not in env and "REDIS_URL" in env:
        redis.setdefault("url", env["REDIS_URL"])
    if kafka:
        overrides["kafka"] = kafka
    if redis:
        overrides["redis"] = redis
    return Settings(**overrides)


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, with every secret shown as ``**********``
    (secret fields, and passwords or ``?api_key=``-like values inside URLs)."""
    return dict(mask_urls(settings.model_dump(mode="json")))
