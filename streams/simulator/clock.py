"""Time-of-day and day-of-week profiles, and sampling of instants within a day."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

MS_PER_HOUR = 3_600_000

#: Relative activity by hour of day (UTC): morning and evening peaks, quiet nights.
ACTIVITY_HOURS = np.array(
    [0.4, 0.25, 0.15, 0.1, 0.1, 0.2, 0.5, 1.0, 1.6, 2.0, 2.2, 2.1,
     1.8, 1.9, 2.0, 1.9, 1.7, 1.5, 1.4, 1.6, 1.8, 1.6, 1.1, 0.7],
)  # fmt: skip
#: Support tickets, complaints, plan changes: office hours.
OFFICE_HOURS = np.array(
    [0.05, 0.05, 0.05, 0.05, 0.05, 0.1, 0.3, 0.8, 1.6, 2.0, 2.0, 1.8,
     1.4, 1.8, 2.0, 1.9, 1.6, 1.2, 0.7, 0.4, 0.3, 0.2, 0.1, 0.05],
)  # fmt: skip
#: Renewal charges and billing-time churn run in a nightly batch, 02:00-04:00.
BILLING_HOURS = np.array([0.0, 0.0, 1.0, 1.0] + [0.0] * 20)

#: Multiplier of activity by ISO weekday (Monday first); averages to 1 over a week.
WEEKLY_FACTOR = np.array([1.12, 1.15, 1.15, 1.12, 1.04, 0.71, 0.71])


def _cumulative(weights: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    c = np.cumsum(weights / weights.sum())
    c[-1] = 1.0
    return c


_CUM = {
    "activity": _cumulative(ACTIVITY_HOURS),
    "office": _cumulative(OFFICE_HOURS),
    "billing": _cumulative(BILLING_HOURS),
}


def sample_ms(rng: np.random.Generator, n: int, profile: str = "activity") -> npt.NDArray[np.int64]:
    """Draw ``n`` instants within a day (ms after midnight) following an hourly profile.

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
        Number of instants.
    profile : {"activity", "office", "billing"}

    Returns
    -------
    ndarray of int64
        Offsets in ``[0, 86_400_000)``.
    """
    hours = np.searchsorted(_CUM[profile], rng.random(n), side="right").astype(np.int64)
    return hours * MS_PER_HOUR + rng.integers(0, MS_PER_HOUR, n, dtype=np.int64)
