"""The day loop: evolves the customers and yields each simulated day's events and labels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from streams.simulator import activity as act_
from streams.simulator import dynamics as dyn
from streams.simulator import schema as s
from streams.simulator.clock import WEEKLY_FACTOR, sample_ms
from streams.simulator.columns import EventBuffer, EventColumns, LabelColumns
from streams.simulator.config import SimulationConfig
from streams.simulator.outcomes import Outcomes, truth_frame
from streams.simulator.population import draw_population
from streams.simulator.world import ALL_DRIVERS, World

I64 = npt.NDArray[np.int64]
BURN_IN_DAYS = 30
RETURN_AFTER_DAYS = (21, 120)


@dataclass(frozen=True)
class DayBatch:
    """Everything that happened on one simulated day, in output order."""

    day: int
    events: EventColumns
    labels: LabelColumns


class Engine:
    """Runs one simulation; iterate :meth:`run` once, then read :attr:`outcomes`.

    Parameters
    ----------
    config : SimulationConfig
    """

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.pop = draw_population(config, self.rng)
        self.props = s.PropertyTable(config.plans)
        self.catalog = act_.Catalog.from_config(config)
        mech = config.mechanisms
        self.world = None if mech is None else World(mech, config.seed, self.pop.n, config.start)
        drivers = len(dyn.RISK_DRIVERS) if mech is None else len(ALL_DRIVERS)
        self.state = dyn.State(self.pop.n, drivers)
        self.state.plan[:] = self.pop.plan
        self.state.anchor[:] = self.pop.join_day
        self.state.since[:] = self.pop.join_day
        self.outcomes = Outcomes(self.pop.n, s.EVENT_TYPES if mech is None
                                 else s.INTERNAL_EVENT_TYPES)
        self.start_ms = s.midnight_ms(config.start)
        self.daily_rate = 1.0 - (1.0 - config.churn_base_rate) ** (1.0 / 30.0)
        weights = [dyn.day_weights(p.period_days, p.billing) for p in config.plans]
        self._cancel_w = np.array([w[0] for w in weights])
        self._renew_w = np.array([w[1] for w in weights])
        self._prices: dict[int, list[tuple[int, float]]] = {}
        for inc in config.resolved_price_increases:
            plan = [p.name for p in config.plans].index(inc.plan)
            self._prices.setdefault(inc.day, []).append((plan, inc.pct))
        self.state.status[self.pop.join_day < 0] = 1
        for _ in range(BURN_IN_DAYS):
            dyn.step_latent(self.state, self.rng)

    def run(self) -> Iterator[DayBatch]:
        """Simulate day after day, yielding each day's batch."""
        for day in range(self.config.days):
            yield self.step(day)

    def _renewal_today(self, idx: I64, day: int) -> npt.NDArray[np.bool_]:
        age = day - self.state.anchor[idx]
        due: npt.NDArray[np.bool_] = (age > 0) & (
            age % self.catalog.period[self.state.plan[idx]] == 0
        )
        return due

    def step(self, day: int) -> DayBatch:
        """Simulate one day."""
        cfg, st, pop, rng, props = self.config, self.state, self.pop, self.rng, self.props
        day_ms = self.start_ms + day * s.MS_PER_DAY
        shocked = dyn.step_latent(st, rng)
        world = self.world
        if world is not None:
            world.step()
        lo = np.full(pop.n, day_ms, np.int64)
        hi = lo + s.MS_PER_DAY
        buf = EventBuffer(lo, hi)

        joiners = np.flatnonzero((st.status == 0) & (pop.join_day == day))
        returners = np.flatnonzero((st.status == 2) & (self.outcomes.return_day == day))
        self.outcomes.mark_returned(returners)
        st.reset_experience(returners)
        for who, start, reason in (
            (joiners, day_ms + pop.join_ms[joiners], s.SIGNUP),
            (returners, day_ms + self.outcomes.return_ms[returners], s.REACTIVATION),
        ):
            st.status[who] = 1
            st.since[who] = day
            st.anchor[who] = day
            lo[who] = start
            act_.emit_starts(buf, st, self.catalog, who, start, reason, props)

        # Churn is decided on what happened up to yesterday.
        eligible = np.flatnonzero((st.status == 1) & (st.since < day))
        churners, churn_ms = self._decide_churn(eligible, day, day_ms)
        hi[churners] = churn_ms

        active = np.flatnonzero(st.status == 1)
        for plan, pct in self._prices.get(day, []):
            act_.emit_price_notices(buf, rng, st, self.catalog, active, plan, pct, day_ms, props)
        if active.shape[0]:
            engagement = np.exp(pop.baseline[active] + st.x[active])
            engagement /= engagement.mean()
            weekday = (cfg.start.weekday() + day) % 7
            rate = cfg.events_per_active_day * float(WEEKLY_FACTOR[weekday])
            if world is None:
                act_.emit_activity(buf, rng, active, engagement, day_ms, rate, props)
            else:
                factor = world.activity_factor(day)
                act_.emit_activity(buf, world.rng, active, engagement, day_ms, rate * factor,
                                   props, world.features_per_session(active))
                world.emit_messages(buf, st, active, engagement, day_ms, factor)
            act_.emit_support(buf, rng, st, pop, active, shocked, day_ms, props)
        staying = active[hi[active] == day_ms + s.MS_PER_DAY]
        due = staying[self._renewal_today(staying, day) | (st.retry_day[staying] == day)]
        act_.emit_billing(buf, rng, st, pop, self.catalog, due, day, day_ms, props)
        act_.emit_plan_changes(buf, rng, st, self.catalog, staying, day_ms, props)

        st.status[churners] = 2
        if world is not None:
            world.on_churn(churners)
        first = churners[self.outcomes.n_churns[churners] == 1]
        back = first[rng.random(first.shape[0]) < cfg.return_share]
        self.outcomes.return_day[back] = day + rng.integers(*RETURN_AFTER_DAYS, back.shape[0])
        self.outcomes.return_ms[back] = np.minimum(sample_ms(rng, back.shape[0]), 86_399_000)

        events = buf.finish()
        order = np.lexsort((churners, churn_ms))
        labels = LabelColumns(churn_ms[order], churners[order].astype(np.int32))
        self.outcomes.record_day(
            day, active.shape[0], eligible.shape[0], events, labels.customer, joiners, returners
        )
        if world is not None:
            labels = world.observe_labels(day, day_ms, labels, staying)
        return DayBatch(day, events, labels)

    def _decide_churn(self, eligible: I64, day: int, day_ms: int) -> tuple[I64, I64]:
        if eligible.shape[0] == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        cfg, st = self.config, self.state
        renewal = self._renewal_today(eligible, day)
        plan = st.plan[eligible]
        day_weight = np.where(renewal, self._renew_w[plan], self._cancel_w[plan])
        changed = cfg.regime_change_day is not None and day >= cfg.regime_change_day
        regime = "after" if changed else "before"
        components = dyn.risk_components(st, self.pop, eligible)
        daily_rate = self.daily_rate
        if self.world is None:
            contributions = components * dyn.RISK_WEIGHTS[regime]
        else:
            contributions = self.world.risk(components, eligible, regime)
            daily_rate *= self.world.churn_factor(day)
        draw = dyn.draw_churn(
            self.rng,
            dyn.update_intent(st, eligible, contributions),
            day_weight,
            daily_rate,
            cfg.signal_strength,
            cfg.no_warning_share,
        )
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

    def truth(self, customer_ids: list[str]) -> pd.DataFrame:
        """Ground-truth table of the run so far (see :data:`outcomes.TRUTH_COLUMNS`)."""
        pop = self.pop
        return truth_frame(
            self.outcomes,
            customer_ids,
            self.start_ms,
            pop.join_day,
            pop.join_ms,
            [p.name for p in self.config.plans],
            [p.billing for p in self.config.plans],
            pop.plan,
            self.state.plan,
            {
                "engagement_baseline": pop.baseline,
                "price_sensitivity": pop.price_sensitivity,
                "card_risk": pop.card_risk,
                "ticket_proneness": pop.ticket_proneness,
            },
            dyn.RISK_DRIVERS if self.world is None else ALL_DRIVERS,
        )
