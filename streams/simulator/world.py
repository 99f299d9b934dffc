"""The running state of the extra mechanisms of :mod:`streams.simulator.mechanisms`.

:class:`World` is created by the engine only when ``config.mechanisms`` is set; it draws from
its own random stream (seeded from the run's seed), holds depth of use, ties and the label
queue, and is called at fixed points of the engine's day.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import numpy.typing as npt

from streams.simulator import schema as s
from streams.simulator.clock import sample_ms
from streams.simulator.columns import EventBuffer, LabelColumns
from streams.simulator.dynamics import FAST, RISK_DRIVERS, RISK_WEIGHTS, SLOW, State
from streams.simulator.mechanisms import EXTRA_DRIVERS, Mechanisms

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DEPTH_THETA, DEPTH_SIGMA = 0.10, 0.15
DEPTH_SHOCK_P, DEPTH_SHOCK_SIZE = 0.006, (0.6, 1.4)
DEPTH_M_DECAY = 0.5 ** (1 / 60)
TIE_DECAY = 0.5 ** (1 / 30)
#: Every driver name, in the column order of the intent when mechanisms are on.
ALL_DRIVERS: tuple[str, ...] = (*RISK_DRIVERS, *EXTRA_DRIVERS)


class World:
    """Extra per-customer state and the hooks the engine calls (see the module docstring)."""

    def __init__(self, mech: Mechanisms, seed: int, n: int, start: dt.date) -> None:
        self.mech = mech
        self.rng = np.random.default_rng([seed, 104_729])
        self.start = start
        rng = self.rng
        self.depth_base = rng.normal(0.0, 0.35, n)
        self.u = np.zeros(n)
        self.u_m = np.zeros(n)
        self.u_fast = np.zeros(n)
        self.u_slow = np.zeros(n)
        self.tie_shock = np.zeros(n)
        self.ties = _ties(rng, n, mech.ties_per_customer)
        self._held = LabelColumns.concat([])

    # -- daily evolution -------------------------------------------------------------------
    def step(self) -> None:
        """Advance depth of use and decay the shock of churned ties by one day."""
        if self.mech.mix:
            rng, n = self.rng, self.u.shape[0]
            drop = np.where(rng.random(n) < DEPTH_SHOCK_P, rng.uniform(*DEPTH_SHOCK_SIZE, n), 0.0)
            self.u_m = self.u_m * DEPTH_M_DECAY - drop
            self.u += DEPTH_THETA * (self.u_m - self.u) + DEPTH_SIGMA * rng.standard_normal(n)
            self.u -= 0.6 * drop
            self.u_fast += FAST * (self.u - self.u_fast)
            self.u_slow += SLOW * (self.u - self.u_slow)
        self.tie_shock *= TIE_DECAY

    def season(self, day: int) -> float:
        """``cos`` of the day of the year against the churn peak (1 at the peak)."""
        doy = (self.start + dt.timedelta(days=day)).timetuple().tm_yday
        return float(np.cos(2 * np.pi * (doy - self.mech.season_peak_doy) / 365.0))

    def churn_factor(self, day: int) -> float:
        return 1.0 + self.mech.season_churn * self.season(day)

    def activity_factor(self, day: int) -> float:
        return 1.0 - self.mech.season_activity * self.season(day)

    def features_per_session(self, idx: I64) -> F64 | None:
        """Mean feature uses per session of customers ``idx`` (None: the default constant)."""
        if not self.mech.mix:
            return None
        fps: F64 = 1.4 * np.exp(self.depth_base[idx] + self.u[idx])
        return fps

    # -- churn -----------------------------------------------------------------------------
    def risk(self, base: F64, idx: I64, regime: str) -> F64:
        """Weighted contributions of every driver (:data:`ALL_DRIVERS`) of customers ``idx``.

        ``base`` holds the six default components, unweighted.
        """
        m = self.mech
        weights = np.array(m.weights) if m.weights is not None else RISK_WEIGHTS[regime]
        shallow = (np.maximum(-(self.depth_base[idx] + self.u_fast[idx]), 0.0)
                   + np.maximum(self.u_slow[idx] - self.u_fast[idx], 0.0))
        ties = np.minimum(self.tie_shock[idx], 3.0)
        return np.column_stack([base * weights, m.mix_weight * shallow, m.social_weight * ties])

    def on_churn(self, churners: I64) -> None:
        """Each tie of a churner feels it (``ties_churned`` rises by one)."""
        if not self.mech.social or churners.shape[0] == 0:
            return
        indptr, nbr = self.ties
        for c in churners.tolist():
            self.tie_shock[nbr[indptr[c]:indptr[c + 1]]] += 1.0

    # -- events ------------------------------------------------------------------------------
    def emit_messages(self, buf: EventBuffer, state: State, active: I64, engagement: F64,
                      day_ms: int, factor: float) -> None:
        """``message`` events: each active customer, per active tie, at ``messages_per_tie``."""
        if not self.mech.social or active.shape[0] == 0:
            return
        indptr, nbr = self.ties
        on = (state.status[nbr] == 1).astype(np.float64)
        owner = np.repeat(np.arange(indptr.shape[0] - 1), np.diff(indptr))
        active_ties = np.bincount(owner, weights=on, minlength=indptr.shape[0] - 1)[active]
        lam = self.mech.messages_per_tie * factor * active_ties * engagement
        who = np.repeat(active, self.rng.poisson(lam))
        buf.add(who, day_ms + sample_ms(self.rng, who.shape[0]), s.MESSAGE)

    # -- labels ------------------------------------------------------------------------------
    def observe_labels(self, day: int, day_ms: int, churn: LabelColumns,
                       staying: I64) -> LabelColumns:
        """The labels published today: true churns dropped, delayed, plus spurious ones."""
        m, rng = self.mech, self.rng
        if not m.noisy_labels:
            return churn
        keep = rng.random(len(churn)) >= m.label_drop_share
        ts, cust = churn.ts_ms[keep], churn.customer[keep]
        n_false = rng.poisson(m.false_label_rate * len(churn)) if staying.shape[0] else 0
        if n_false:
            who = rng.choice(staying, min(n_false, staying.shape[0]), replace=False)
            ts = np.concatenate([ts, day_ms + sample_ms(rng, who.shape[0], "office")])
            cust = np.concatenate([cust, who.astype(np.int32)])
        if m.label_delay_days > 0:
            delay = np.asarray(rng.random(ts.shape[0])) * (m.label_delay_days * s.MS_PER_DAY)
            ts = ts + delay.astype(np.int64)
        held = LabelColumns.concat([self._held, LabelColumns(ts, cust)])
        end = day_ms + s.MS_PER_DAY
        due = held.ts_ms < end
        self._held = LabelColumns(held.ts_ms[~due], held.customer[~due])
        out_ts, out_c = held.ts_ms[due], held.customer[due]
        order = np.lexsort((out_c, out_ts))
        return LabelColumns(out_ts[order], out_c[order])


def _ties(rng: np.random.Generator, n: int, mean: float) -> tuple[I64, I64]:
    """Random undirected ties, about ``mean`` per customer, as CSR (indptr, neighbours)."""
    if mean <= 0 or n < 2:
        return np.zeros(n + 1, np.int64), np.zeros(0, np.int64)
    m = round(n * mean / 2)
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n  # never a self-tie
    src = np.concatenate([a, b])
    dst = np.concatenate([b, a])
    order = np.argsort(src, kind="stable")
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    return indptr, dst[order].astype(np.int64)


def tie_pairs(world: World) -> tuple[I64, I64]:
    """Every tie as (customer, neighbour) arrays, both directions (for analysis and tests)."""
    indptr, nbr = world.ties
    return np.repeat(np.arange(indptr.shape[0] - 1), np.diff(indptr)), nbr
