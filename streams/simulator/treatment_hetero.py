"""The heterogeneous part of the treatment simulator (see :mod:`streams.simulator.treatment`).

One :class:`HeteroPart` rides along a ``TreatmentEngine``: it draws only from the treatment's
own random stream, so the plain simulator's draws are untouched. Per customer it keeps a
*treatment window*: the first action after the previous window ended starts one of
``horizon_days`` with that action's true effect for the customer's segment
(:mod:`streams.simulator.treatment_effects`); actions inside a window change nothing. Holdout
customers get windows too (their would-be action is recorded), never an effect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from alerts.bandit import BanditParams, BanditState, choose, context_of
from alerts.outcomes import Action, ActionOutcome, OutcomeJoiner
from alerts.policy import Driver
from alerts.reco import OfferRecommender, attach_offers
from streams.simulator import schema as s
from streams.simulator.columns import EventColumns
from streams.simulator.dynamics import ChurnDraw
from streams.simulator.engine import DayBatch
from streams.simulator.treatment_effects import (
    PLANTED_SEQUENCE,
    SEGMENTS,
    TASTE_LOADINGS,
    Heterogeneity,
    segment_codes,
)

if TYPE_CHECKING:
    from streams.simulator.treatment import TreatmentEngine

I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]
HOUR_MS = 3_600_000
#: Driver feature shown for each simulator risk driver (so routing sees its category).
DRIVER_FEATURES = ("log_count_7d.session", "log_count_7d.session",
                   "log_count_30d.support_ticket", "log_count_30d.complaint",
                   "days_since.payment_failure", "days_since.payment_failure")


class HeteroPart:
    """Segments, heterogeneous effects, the learning policy, offers and the planted pattern."""

    def __init__(self, engine: TreatmentEngine, het: Heterogeneity,
                 bandit: BanditParams | None) -> None:
        self.engine, self.het, self.params = engine, het, bandit
        n = engine.pop.n
        self.rng = engine._trng
        self.segments = segment_codes(engine.pop.ticket_proneness, engine.pop.baseline)
        self.window_end = np.full(n, -1, np.int64)
        self.provoked_until = np.full(n, -1, np.int64)
        self.window_saved = np.zeros(n, np.bool_)
        self.saved = self.caused = self.windows = 0
        self.horizon_s = engine.treatment.horizon_days * 86400.0
        self.joiner = OutcomeJoiner(self.horizon_s)
        self.state = BanditState()
        self.outcomes: list[ActionOutcome] = []
        factors = self.rng.normal(0.0, het.taste_sd, (n, len(TASTE_LOADINGS)))
        self.taste = factors @ np.array(TASTE_LOADINGS) + self.rng.normal(
            0.0, het.taste_noise, (n, len(het.offers)))
        self.logits = het.accept_logits(self.segments)
        self.offer_records: list[dict[str, Any]] = []
        self.recommender = OfferRecommender(het.offers, seed=engine.config.seed)
        self.plan = {name: np.full(n, -1, np.int64) for name in (*PLANTED_SEQUENCE, "churn")}
        self.leavers = 0
        self.daily: list[list[int]] = []  # per day: windows started, saved, caused

    def segment_of(self, idx: int) -> str:
        return SEGMENTS[int(self.segments[idx])]

    @staticmethod
    def drivers(code: np.int64 | int) -> tuple[Driver, ...]:
        return (Driver(DRIVER_FEATURES[int(code)], 1.0, 1.0),)

    def decide(self, idx: int, day: int, alert: dict[str, Any], action: dict[str, Any]) -> None:
        """Choose the action (learning policy) and start a treatment window if one is due."""
        seg = self.segment_of(idx)
        action["segment"] = seg
        attach_offers(alert, self.recommender)
        params = self.params or BanditParams()
        ctx = context_of(alert, params)
        if self.params is not None:
            route = self.engine.treatment.alerts.routing.route(
                alert["driver_category"], alert["severity"], alert["customer_value"])
            choice = choose(self.state, ctx, route.allowed, alert["episode_id"], self.params)
            alert["recommended_action"] = action["recommended_action"] = choice.action
            if not action["holdout"]:
                action["action"] = choice.action
            alert["policy"] = choice.to_wire()
        if day <= self.window_end[idx]:
            return
        holdout = bool(action["holdout"])
        chosen = str(action["recommended_action"])
        end = day + self.engine.treatment.horizon_days - 1
        self.window_end[idx] = end
        self.window_saved[idx] = False
        if not holdout:
            self.windows += 1
            e = self.het.effect(chosen, seg)
            u = self.rng.random()
            if e > 0 and u < e:
                self.engine.protected_until[idx] = end
            elif e < 0 and u < -e:
                self.provoked_until[idx] = end
        self.joiner.add_action(Action(
            str(action["action_id"]), str(action["customer_id"]), day * 86400.0 +
            self.engine.start_ms / 1000.0, chosen, holdout, seg,
            str(alert["driver_category"]), str(alert["severity"]), ctx))

    def churn(self, eligible: I64, draw: ChurnDraw, saved: Bool, day: int) -> Bool:
        """Today's churners: natural ones not saved, provoked ones, planted leavers."""
        fresh = saved & ~self.window_saved[eligible]
        self.saved += int(fresh.sum())
        self.window_saved[eligible[saved]] = True
        open_ = np.flatnonzero((self.provoked_until[eligible] >= day) & ~draw.churned)
        extra = np.zeros(eligible.shape[0], np.bool_)
        extra[open_[self.rng.random(open_.shape[0]) < draw.hazard[open_]]] = True
        self.caused += int(extra.sum())
        forced = self.plan["churn"][eligible] == day
        churned: Bool = (draw.churned & ~saved) | extra | forced
        return churned

    def before_day(self, day: int) -> None:
        """Plan today's new leavers (the planted pattern)."""
        self.daily.append([self.windows, self.saved, self.caused])
        st = self.engine.state
        free = np.flatnonzero((st.status == 1) & (self.plan["churn"] < 0))
        new = free[self.rng.random(free.shape[0]) < self.het.leaver_rate]
        self.leavers += int(new.shape[0])
        when = np.full(new.shape[0], day, np.int64)
        for name, gap in zip((*PLANTED_SEQUENCE, "churn"), ((0, 1), (2, 5), (2, 5), (6, 15)),
                             strict=True):
            when = when + self.rng.integers(*gap, new.shape[0])
            self.plan[name][new] = when

    def after_day(self, batch: DayBatch) -> DayBatch:
        day = batch.day
        day_ms = self.engine.start_ms + day * s.MS_PER_DAY
        events = EventColumns.concat([batch.events, self._planted(day, day_ms)])
        events = events.take(np.argsort(events.ts_ms, kind="stable"))
        self._offers(day_ms)
        ids = self.engine.ids
        for c, t in zip(batch.labels.customer.tolist(), batch.labels.ts_ms.tolist(),
                        strict=True):
            self._learn(self.joiner.add_label(ids[c], t / 1000.0, True))
        self._learn(self.joiner.advance((day_ms + s.MS_PER_DAY) / 1000.0))
        return DayBatch(day, events, batch.labels)

    def _learn(self, outcomes: list[ActionOutcome]) -> None:
        for o in outcomes:
            self.outcomes.append(o)
            if self.params is not None and not o.action.holdout:
                self.state.learn(o.action.context, o.action.action, o.stayed)

    def _planted(self, day: int, day_ms: int) -> EventColumns:
        st, props, eng = self.engine.state, self.engine.props, self.engine
        parts = []
        for k, name in enumerate(PLANTED_SEQUENCE):
            who = np.flatnonzero((self.plan[name] == day) & (st.status == 1))
            ts = day_ms + 9 * HOUR_MS + self.rng.integers(0, 8 * HOUR_MS, who.shape[0])
            plan = st.plan[who]
            etype = (s.SUPPORT_TICKET, s.PAYMENT_FAILURE, s.COMPLAINT)[k]
            value = (eng.catalog.price[plan] if etype == s.PAYMENT_FAILURE
                     else np.full(who.shape[0], np.nan))
            prop = (np.full(who.shape[0], props.topic_codes[2], np.int32)
                    if etype == s.SUPPORT_TICKET else props.payment_codes[plan]
                    if etype == s.PAYMENT_FAILURE else np.full(who.shape[0], -1, np.int32))
            parts.append(EventColumns(ts.astype(np.int64), who.astype(np.int32),
                                      np.full(who.shape[0], etype, np.int8),
                                      value.astype(np.float64), prop.astype(np.int32)))
        return EventColumns.concat(parts)

    def _offers(self, day_ms: int) -> None:
        het, st = self.het, self.engine.state
        active = np.flatnonzero(st.status == 1)
        cust = active[self.rng.random(active.shape[0]) < het.offer_rate]
        offer: I64 = np.asarray(self.rng.integers(0, len(het.offers), cust.shape[0]), np.int64)
        p = 1.0 / (1.0 + np.exp(-(self.logits[cust, offer] + self.taste[cust, offer])))
        accepted = self.rng.random(cust.shape[0]) < p
        gap = self.rng.integers(0, 9 * HOUR_MS, cust.shape[0])
        ts: I64 = np.asarray(day_ms + 9 * HOUR_MS + gap, dtype=np.int64)
        first = len(self.offer_records)
        stamps = s.iso_ms(ts)
        cs = [int(x) for x in cust]
        os_ = [int(x) for x in offer]
        acc = [bool(x) for x in accepted]
        ms = [int(x) for x in ts]
        for k in range(len(cs)):
            c, o, a, t, t_ms = cs[k], os_[k], acc[k], stamps[k], ms[k]
            cid = self.engine.ids[c]
            self.offer_records.append({
                "schema_version": 1, "event_id": f"o-{self.engine.config.seed}-{first + k}",
                "customer_id": cid, "event_type": "offer_accepted" if a else "offer_declined",
                "ts": t + "+00:00", "properties": {"offer": het.offers[o]}})
            self.recommender.learn(cid, het.offers[o], a)
            if a:
                self.joiner.add_offer(cid, t_ms / 1000.0, het.offers[o])

    def truth(self) -> dict[str, Any]:
        het = self.het
        return {
            "segments": list(SEGMENTS),
            "effects": {a: dict(zip(SEGMENTS, row, strict=True))
                        for a, row in het.effects.items()},
            "offers": list(het.offers),
            "offer_prefs": {seg: dict(zip(het.offers, row, strict=True))
                            for seg, row in het.offer_prefs.items()},
            "planted_pattern": list(PLANTED_SEQUENCE), "leavers": self.leavers,
            "saved": self.saved, "caused": self.caused, "net_saved": self.saved - self.caused,
            "windows": self.windows,
            "cumulative_by_day": self.daily,  # [windows, saved, caused] at each day's start
            "customer_segments": {self.engine.ids[i]: SEGMENTS[int(c)]
                                  for i, c in enumerate(self.segments.tolist())},
            "bandit": self.state.to_json() if self.params is not None else None,
        }
