"""The demo's simulated time: where it starts, where it stopped, and what happens at today.

Event time must stay behind the wall clock: the workers refuse events more than
``CHURN_INPUT__MAX_FUTURE_S`` ahead of it (``ts_in_future``). A fresh demo simulates two years
that end today; a later demo continues where the last one stopped, so event time only moves
forward between runs. When the simulated time has caught up with today, the next demo starts a
new *generation*: two years back again, on topics and a Redis key prefix of its own, so no
process sees time go backwards (a customer's features, the watermarks, the learner's labels
and the alert episodes of the earlier generation stay where they were).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import orjson

from streams.settings import Settings
from streams.simulator.config import SimulationConfig

DEMO_SEED = 7
DEMO_DAYS = 730
MIN_DAYS = 30
DEMO_STATE = "demo-simulation.json"


@dataclass(frozen=True)
class DemoPlan:
    """The simulation of this demo run and the generation whose topics and keys it uses."""

    config: SimulationConfig
    generation: int = 0


def demo_plan(customers: int, state_dir: Path | None = None,
              today: dt.date | None = None) -> DemoPlan:
    """Where this demo's simulated time starts and ends (never after ``today``).

    >>> day = dt.date(2026, 6, 1)
    >>> plan = demo_plan(10, None, day)
    >>> plan.config.start, plan.config.days, plan.generation
    (datetime.date(2024, 6, 1), 730, 0)
    """
    today = today or dt.datetime.now(dt.UTC).date()
    seed, start, generation = DEMO_SEED, today - dt.timedelta(days=DEMO_DAYS), 0
    position = state_dir / DEMO_STATE if state_dir is not None else None
    if position is not None and position.exists():
        with contextlib.suppress(ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            saved = orjson.loads(position.read_bytes())
            seed, start = int(saved["seed"]) + 1, dt.date.fromisoformat(saved["next_start"])
            generation = int(saved.get("generation", 0))
    days = min(DEMO_DAYS, (today - start).days)
    if days < MIN_DAYS:  # caught up with the wall clock: a new generation, two years back
        start, days, generation = today - dt.timedelta(days=DEMO_DAYS), DEMO_DAYS, generation + 1
    return DemoPlan(SimulationConfig(seed=seed, n_customers=customers, days=days, start=start),
                    generation)


def demo_config(customers: int, state_dir: Path | None = None,
                today: dt.date | None = None) -> SimulationConfig:
    """The simulation of :func:`demo_plan`."""
    return demo_plan(customers, state_dir, today).config


def save_position(state_dir: Path, config: SimulationConfig, days_done: int,
                  generation: int = 0) -> None:
    """Remember where the demo's simulated time stopped (see :func:`demo_plan`)."""
    next_start = config.start + dt.timedelta(days=days_done + 1)
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / DEMO_STATE).write_bytes(orjson.dumps(
        {"seed": config.seed, "next_start": next_start.isoformat(), "generation": generation}))


def for_generation(settings: Settings, generation: int) -> Settings:
    """The settings of a generation: its own topics and key prefix (generation 0: unchanged).

    >>> from streams.settings import load_settings
    >>> s = for_generation(load_settings(), 2)
    >>> s.topics.events, s.redis.key_prefix, s.retention.outcomes_topic
    ('customer-events.g2', 'cp.g2', 'retention-outcomes.g2')
    """
    if generation == 0:
        return settings
    suffix = f".g{generation}"
    topics = {name: f"{value}{suffix}"
              for name, value in settings.topics.model_dump().items() if isinstance(value, str)}
    return settings.model_copy(update={
        "topics": settings.topics.model_copy(update=topics),
        "redis": settings.redis.model_copy(
            update={"key_prefix": f"{settings.redis.key_prefix}{suffix}"}),
        "retention": settings.retention.model_copy(
            update={"outcomes_topic": f"{settings.retention.outcomes_topic}{suffix}"}),
    })


def generation_env(settings: Settings) -> dict[str, str]:
    """The environment that gives the demo's processes these topics and this key prefix."""
    env = {f"CHURN_TOPICS__{name.upper()}": value
           for name, value in settings.topics.model_dump().items() if isinstance(value, str)}
    env["CHURN_REDIS__KEY_PREFIX"] = settings.redis.key_prefix
    env["CHURN_RETENTION__OUTCOMES_TOPIC"] = settings.retention.outcomes_topic
    return env
