"""Churn mechanisms beyond the default world: what a :class:`Mechanisms` turns on.

The default simulation (``SimulationConfig.mechanisms is None``) never reaches this code, so
its output stays byte-identical. A :class:`Mechanisms` adds, each independently:

*Behaviour mix* (``mix_weight``). Every customer has a latent *depth of use*: how many
``feature_use`` events a session carries (log-depth ``baseline + u``, ``u`` a mean-reverting
walk with occasional sharp drops, like engagement). The total activity volume does not
depend on it: deeper sessions are fewer. The risk driver ``shallow_use`` is low or declining
depth, visible only in the *ratio* of feature uses to sessions, not in any volume.

*Social ties* (``ties_per_customer``, ``social_weight``). Customers are linked by random
undirected ties; every active customer sends ``message`` events at a rate proportional to
their active ties. When a tied customer churns, the driver ``ties_churned`` of each of their
ties rises by one (30-day half-life): churn spreads along ties. The model sees it only
indirectly (fewer messages).

*Seasonality* (``season_churn``, ``season_activity``). The day's churn rate is multiplied by
``1 + season_churn * cos(2 pi (day of year - season_peak_doy) / 365)`` and activity by
``1 - season_activity * cos(...)`` (activity dips when churn peaks).

*Noisy, partially observed labels* (``label_drop_share``, ``false_label_rate``,
``label_delay_days``). A share of churns is never labelled (the customer just goes silent);
spurious churn labels (``false_label_rate`` per true churn) fall on active customers who stay;
each published label is stamped up to ``label_delay_days`` after the churn (cancellation
recorded at the end of a period). The ground truth keeps the real churns.

*Other vocabulary* (``vocabulary``). Names written for the internal event types (the eight of
:data:`~streams.simulator.schema.INTERNAL_EVENT_TYPES`), so a run can speak a vocabulary that
is not ours.

*Driver weights* (``weights``). Weights of the six default drivers
(:data:`~streams.simulator.dynamics.RISK_DRIVERS`); ``None`` keeps the default weights
(regime change included). ``shallow_use`` weighs ``mix_weight``, ``ties_churned``
``social_weight``.
Price and plan-change shocks come from ``SimulationConfig.price_increases`` with a heavy
``price_increase`` weight (see :mod:`streams.simulator.scenarios`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Risk drivers a :class:`Mechanisms` adds after the six default ones.
EXTRA_DRIVERS: tuple[str, ...] = ("shallow_use", "ties_churned")


@dataclass(frozen=True)
class Mechanisms:
    """Which extra churn mechanisms run, and how strongly (see the module docstring)."""

    weights: tuple[float, ...] | None = None
    mix_weight: float = 0.0
    ties_per_customer: float = 0.0
    social_weight: float = 0.0
    messages_per_tie: float = 0.3
    season_churn: float = 0.0
    season_activity: float = 0.0
    season_peak_doy: int = 15
    label_drop_share: float = 0.0
    false_label_rate: float = 0.0
    label_delay_days: float = 0.0
    vocabulary: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        from streams.simulator.dynamics import RISK_DRIVERS
        from streams.simulator.schema import INTERNAL_EVENT_TYPES

        n = len(RISK_DRIVERS)
        if self.weights is not None:
            _check(len(self.weights) == n, f"weights needs {n} values, one per driver")
            _check(all(w >= 0 for w in self.weights), "weights must be >= 0")
        for name in ("mix_weight", "ties_per_customer", "social_weight", "messages_per_tie",
                     "label_delay_days", "false_label_rate"):
            _check(getattr(self, name) >= 0, f"{name} must be >= 0")
        _check(0.0 <= self.season_churn < 1.0, "season_churn must be in [0, 1)")
        _check(0.0 <= self.season_activity < 1.0, "season_activity must be in [0, 1)")
        _check(0.0 <= self.label_drop_share < 1.0, "label_drop_share must be in [0, 1)")
        _check(1 <= self.season_peak_doy <= 366, "season_peak_doy must be a day of the year")
        if self.vocabulary is not None:
            _check(len(self.vocabulary) == len(INTERNAL_EVENT_TYPES),
                   f"vocabulary needs {len(INTERNAL_EVENT_TYPES)} names")
            _check(len(set(self.vocabulary)) == len(self.vocabulary), "names must be unique")
            _check(all(v and v.isidentifier() for v in self.vocabulary), "bad event type name")

    @property
    def mix(self) -> bool:
        """Depth of use is simulated (and drives churn when ``shallow_use`` weighs)."""
        return self.mix_weight > 0

    @property
    def social(self) -> bool:
        """Customers have ties and send messages."""
        return self.ties_per_customer > 0

    @property
    def noisy_labels(self) -> bool:
        return (self.label_drop_share > 0 or self.false_label_rate > 0
                or self.label_delay_days > 0)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
