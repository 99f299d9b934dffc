"""Retention actions with a known effect, to check that the uplift report recovers it.

The simulator's engine, with one step added to its churn decision: each day, every
churn-eligible customer gets a score from their standardised churn intent ``z`` (what a
well-calibrated model would see: ``sigmoid(slope * z + offset)``), the scores go through the
real alert policy and routing (:mod:`alerts`), and a customer who gets a retention action that
is not the holdout is *retained* by it with probability ``effect``: they do not churn for the
next ``horizon_days`` (from the day of the action). So, over the horizon after the first action,
the churn risk of actioned customers is ``1 - effect`` times the holdout's: the relative risk
that ``churnpulse report uplift`` should recover.

Everything else is the unmodified simulator. The treatment uses its own random stream, so with
``effect=0`` the run is identical to the plain simulator's (a test holds it to that).

``churnpulse simulate-treatment --effect 0.4 --out DIR`` writes ``actions.jsonl`` (the
``retention-actions`` records), ``alerts.jsonl`` and ``labels.jsonl``; then
``churnpulse report uplift --actions DIR/actions.jsonl --labels DIR/labels.jsonl`` estimates the
effect; pass ``--horizon-days`` equal to the treatment's horizon.

**Heterogeneous effects** (``TreatmentConfig.hetero``, ``simulate-treatment --hetero``; see
:mod:`streams.simulator.treatment_effects` for the ground truth): customers have a segment, the
score carries the intent's main driver (so routing sees a driver category), each action's
effect depends on the segment (it may backfire), a customer gets a new treatment window at
their first action after the previous window ended, offers are presented and accepted or
declined by segment preference and personal taste, and a share of customers plant a churn
pattern. With ``TreatmentConfig.bandit`` the action is chosen by :mod:`alerts.bandit` among the
routing row's allowed actions, learning from the outcomes as they resolve
(:mod:`alerts.outcomes`). The heterogeneous parts live in
:mod:`streams.simulator.treatment_hetero`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import orjson

from alerts.bandit import BanditParams
from alerts.enrich import AlertConfig, enrich
from alerts.policy import Driver, RiskState, ScoreInput, update
from streams.simulator import dynamics as dyn
from streams.simulator.clock import sample_ms
from streams.simulator.config import SimulationConfig
from streams.simulator.engine import DayBatch, Engine
from streams.simulator.formats import WireFormatter
from streams.simulator.schema import customer_ids
from streams.simulator.treatment_effects import Heterogeneity
from streams.simulator.treatment_hetero import HeteroPart

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class TreatmentConfig:
    """How scores are made from the simulator's risk, and what an action does."""

    effect: float = 0.4
    horizon_days: int = 30
    slope: float = 1.5
    offset: float = -1.5
    alerts: AlertConfig = field(default_factory=AlertConfig)
    hetero: Heterogeneity | None = None
    bandit: BanditParams | None = None  # needs hetero

    def __post_init__(self) -> None:
        if not 0.0 <= self.effect <= 1.0:
            raise ValueError(f"effect {self.effect} must be within [0, 1]")


class TreatmentEngine(Engine):
    """:class:`~streams.simulator.engine.Engine` whose churn decision sees retention actions."""

    def __init__(self, config: SimulationConfig, treatment: TreatmentConfig) -> None:
        super().__init__(config)
        self.treatment = treatment
        self.ids = customer_ids(config.n_customers)
        self.treated_day = np.full(self.pop.n, -1, np.int64)
        self.protected_until = np.full(self.pop.n, -1, np.int64)
        self.states: dict[int, RiskState] = {}
        self.alerts: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.saved = 0
        self._trng = np.random.default_rng([config.seed, 7919])
        self.het = None if treatment.hetero is None else HeteroPart(self, treatment.hetero,
                                                                    treatment.bandit)

    def step(self, day: int) -> DayBatch:
        if self.het is None:
            return super().step(day)
        self.het.before_day(day)
        return self.het.after_day(super().step(day))

    def _decide_churn(self, eligible: I64, day: int, day_ms: int) -> tuple[I64, I64]:
        # Engine._decide_churn, with the treatment between the draw and its bookkeeping
        if eligible.shape[0] == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        cfg, st = self.config, self.state
        renewal = self._renewal_today(eligible, day)
        plan = st.plan[eligible]
        day_weight = np.where(renewal, self._renew_w[plan], self._cancel_w[plan])
        changed = cfg.regime_change_day is not None and day >= cfg.regime_change_day
        regime = "after" if changed else "before"
        contributions = dyn.risk_components(st, self.pop, eligible) * dyn.RISK_WEIGHTS[regime]
        draw = dyn.draw_churn(
            self.rng,
            dyn.update_intent(st, eligible, contributions),
            day_weight,
            self.daily_rate,
            cfg.signal_strength,
            cfg.no_warning_share,
        )
        self._score(eligible, draw.z, day, day_ms, draw.driver)
        saved = draw.churned & (self.protected_until[eligible] >= day)
        if self.het is None:
            self.saved += int(saved.sum())
            draw = replace(draw, churned=draw.churned & ~saved)
        else:
            draw = replace(draw, churned=self.het.churn(eligible, draw, saved, day))
        churn = draw.churned
        churners = eligible[churn]
        at_renewal = renewal[churn]
        offset = np.where(
            at_renewal,
            sample_ms(self.rng, churners.shape[0], "billing"),
            sample_ms(self.rng, churners.shape[0], "activity"),
        )
        churn_ms = day_ms + offset
        self.outcomes.record_churn(eligible, draw, churners, churn_ms, at_renewal)
        return churners, churn_ms

    def _score(self, eligible: I64, z: npt.NDArray[np.float64], day: int, day_ms: int,
               driver: I64) -> None:
        t = self.treatment
        het = self.het
        params = t.alerts.policy
        scores = 1.0 / (1.0 + np.exp(-(t.slope * z + t.offset)))
        ts = day_ms / 1000.0
        for j, (idx, score) in enumerate(zip(eligible.tolist(), scores.tolist(), strict=True)):
            state = self.states.get(idx)
            if score < params.exit and (state is None or not state.in_episode):
                continue  # nothing can happen: skip the bookkeeping of calm customers
            cid = self.ids[idx]
            drivers: tuple[Driver, ...] = () if het is None else het.drivers(driver[j])
            new, decisions = update(state or RiskState(), ScoreInput(
                cid, f"{cid}:d{day}", round(score, 6), ts, "sweep", "sim-oracle",
                drivers), params, ts)
            self.states[idx] = new
            for decision in decisions:
                segment = "unknown" if het is None else het.segment_of(idx)
                alert, action = enrich(decision, new, None, segment, t.alerts)
                self.alerts.append(alert)
                self.actions.append(action)
                if het is not None:
                    het.decide(idx, day, alert, action)
                elif not action["holdout"] and self.treated_day[idx] < 0:
                    self.treated_day[idx] = day
                    if self._trng.random() < t.effect:
                        self.protected_until[idx] = day + t.horizon_days - 1


@dataclass
class TreatedRun:
    """A finished run: the decisions, the churn labels and the ground truth."""

    alerts: list[dict[str, Any]]
    actions: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    saved: int
    treated: int
    offers: list[dict[str, Any]] = field(default_factory=list)  # hetero runs only
    truth: dict[str, Any] = field(default_factory=dict)  # hetero runs only

    def write(self, out: Path) -> dict[str, Path]:
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, rows in (("alerts", self.alerts), ("actions", self.actions),
                           ("labels", self.labels), ("offers", self.offers)):
            if name == "offers" and not rows:
                continue
            path = out / f"{name}.jsonl"
            path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
            paths[name] = path
        if self.truth:
            paths["truth"] = out / "treatment_truth.json"
            paths["truth"].write_bytes(orjson.dumps(self.truth, option=orjson.OPT_INDENT_2))
        return paths


def run_treated(config: SimulationConfig, treatment: TreatmentConfig,
                on_day: Callable[[DayBatch], None] | None = None,
                events_out: BinaryIO | None = None) -> TreatedRun:
    """Simulate with retention actions of a known effect (see the module docstring);
    ``events_out`` receives the customer events as JSON lines."""
    engine = TreatmentEngine(config, treatment)
    formatter = WireFormatter(config.seed, engine.ids, engine.props)
    labels: list[dict[str, Any]] = []
    written = 0
    for batch in engine.run():
        labels.extend(formatter.label_records(batch.labels, len(labels)))
        if events_out is not None:
            events_out.write(formatter.jsonl_events(batch.events, written))
            written += len(batch.events)
        if on_day is not None:
            on_day(batch)
    if engine.het is not None:
        het = engine.het
        return TreatedRun(engine.alerts, engine.actions, labels, het.saved, het.windows,
                          het.offer_records, het.truth())
    return TreatedRun(engine.alerts, engine.actions, labels, engine.saved,
                      int((engine.treated_day >= 0).sum()))
