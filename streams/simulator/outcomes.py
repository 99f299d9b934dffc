"""Ground truth bookkeeping: who churned when and why, hazards, daily counters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from streams.simulator import schema as s
from streams.simulator.columns import EventColumns
from streams.simulator.dynamics import RISK_DRIVERS

if TYPE_CHECKING:
    from streams.simulator.dynamics import ChurnDraw

I64 = npt.NDArray[np.int64]
CAUSES: tuple[str | None, ...] = (None, "behaviour", "no_warning")
RECENT_ALPHA = 1.0 / 15.0  # EMA of the daily hazard, about a 30-day span

#: Columns of the ground-truth table, in order.
TRUTH_COLUMNS: tuple[str, ...] = (
    "customer_id", "join_ts", "plan", "final_plan", "billing", "churned", "churn_ts",
    "churn_cause", "churn_driver", "churned_at_renewal", "returned", "return_ts", "n_churns",
    "hazard_mean", "hazard_max", "hazard_recent", "risk_z_mean", "risk_z_at_churn",
    "engagement_baseline", "price_sensitivity", "card_risk", "ticket_proneness",
)  # fmt: skip


class Outcomes:
    """Per-customer outcomes (arrays of length ``n``) and per-day counters."""

    def __init__(self, n: int, type_names: Sequence[str] = s.EVENT_TYPES) -> None:
        self.type_names = tuple(type_names)
        self.n_churns = np.zeros(n, np.int64)
        self.first_churn_ms = np.full(n, -1, np.int64)
        self.cause = np.zeros(n, np.int64)
        self.driver = np.full(n, -1, np.int64)
        self.at_renewal = np.zeros(n, np.bool_)
        self.z_at_churn = np.full(n, np.nan)
        self.hazard_at_churn = np.full(n, np.nan)
        self.return_day = np.full(n, -1, np.int64)
        self.return_ms = np.full(n, -1, np.int64)
        self.returned_on = np.full(n, -1, np.int64)
        self.hazard_sum = np.zeros(n)
        self.z_sum = np.zeros(n)
        self.eligible_days = np.zeros(n, np.int64)
        self.hazard_max = np.full(n, np.nan)
        self.hazard_recent = np.full(n, np.nan)
        self._frozen = np.zeros(n, np.bool_)
        self.daily: list[dict[str, int]] = []

    def record_churn(
        self,
        eligible: I64,
        draw: ChurnDraw,
        churners: I64,
        churn_ms: I64,
        at_renewal: npt.NDArray[np.bool_],
    ) -> None:
        """Update hazard summaries of ``eligible`` and the outcomes of today's ``churners``."""
        h = draw.hazard
        self.hazard_sum[eligible] += h
        self.z_sum[eligible] += draw.z
        self.eligible_days[eligible] += 1
        self.hazard_max[eligible] = np.fmax(self.hazard_max[eligible], h)
        live = ~self._frozen[eligible]
        idx, hl = eligible[live], h[live]
        prev = self.hazard_recent[idx]
        self.hazard_recent[idx] = np.where(np.isnan(prev), hl, prev + RECENT_ALPHA * (hl - prev))
        churned = draw.churned
        first = self.n_churns[churners] == 0
        f_idx = churners[first]
        self.first_churn_ms[f_idx] = churn_ms[first]
        self.cause[f_idx] = np.where(draw.behaviour[churned][first], 1, 2)
        self.driver[f_idx] = np.where(
            draw.behaviour[churned][first], draw.driver[churned][first], -1
        )
        self.at_renewal[f_idx] = at_renewal[first]
        self.z_at_churn[f_idx] = draw.z[churned][first]
        self.hazard_at_churn[f_idx] = h[churned][first]
        self._frozen[f_idx] = True
        self.n_churns[churners] += 1

    def mark_returned(self, who: I64) -> None:
        """Remember the day customers ``who`` came back."""
        self.returned_on[who] = self.return_day[who]

    def record_day(
        self,
        day: int,
        active: int,
        eligible: int,
        events: EventColumns,
        churners: npt.NDArray[np.int32],
        joiners: I64,
        returners: I64,
    ) -> None:
        """Append the day's counters (see :meth:`daily_frame`)."""
        names = self.type_names
        counts = np.bincount(events.etype, minlength=len(names))
        row = {"day": day, "active": active, "eligible": eligible, "churns": int(churners.shape[0])}
        row |= {"joins": int(joiners.shape[0]), "returns": int(returners.shape[0])}
        row |= {"events": len(events)}
        row |= {name: int(c) for name, c in zip(names, counts.tolist(), strict=True)}
        self.daily.append(row)

    def daily_frame(self) -> pd.DataFrame:
        """One row per day: active and churn-eligible customers, churns, joins, returns, events."""
        return pd.DataFrame(self.daily)


def truth_frame(
    outcomes: Outcomes,
    customer_ids: list[str],
    start_ms: int,
    join_day: I64,
    join_ms: I64,
    plans: list[str],
    billing: list[str],
    initial_plan: I64,
    final_plan: I64,
    traits: dict[str, npt.NDArray[np.float64]],
    driver_names: Sequence[str] = RISK_DRIVERS,
) -> pd.DataFrame:
    """Assemble the ground-truth table (columns :data:`TRUTH_COLUMNS`)."""
    o = outcomes
    names = np.array(plans, dtype=object)
    days = np.maximum(o.eligible_days, 1)
    never = o.eligible_days == 0
    drivers = np.array([None, *driver_names], dtype=object)
    returned = o.returned_on >= 0
    return_ms = start_ms + o.returned_on * s.MS_PER_DAY + o.return_ms
    frame = pd.DataFrame(
        {
            "customer_id": customer_ids,
            "join_ts": _ts(start_ms + join_day * s.MS_PER_DAY + join_ms),
            "plan": names[initial_plan],
            "final_plan": names[final_plan],
            "billing": np.array(billing, dtype=object)[initial_plan],
            "churned": o.n_churns > 0,
            "churn_ts": _ts(np.where(o.n_churns > 0, o.first_churn_ms, -1)),
            "churn_cause": np.array(CAUSES, dtype=object)[o.cause],
            "churn_driver": drivers[o.driver + 1],
            "churned_at_renewal": o.at_renewal,
            "returned": returned,
            "return_ts": _ts(np.where(returned, return_ms, -1)),
            "n_churns": o.n_churns,
            "hazard_mean": np.where(never, np.nan, o.hazard_sum / days),
            "hazard_max": o.hazard_max,
            "hazard_recent": o.hazard_recent,
            "risk_z_mean": np.where(never, np.nan, o.z_sum / days),
            "risk_z_at_churn": o.z_at_churn,
            **traits,
        }
    )
    return frame.loc[:, list(TRUTH_COLUMNS)]


def _ts(ms: I64) -> pd.Series:
    """Epoch ms to a UTC datetime series; negative sentinel -1 becomes NaT."""
    series: pd.Series = pd.Series(pd.to_datetime(ms, unit="ms", utc=True))
    keep = np.asarray(ms != -1, dtype=bool)
    return series.where(keep)  # NaT where the sentinel was
