"""The in-memory result of a run: :func:`simulate` and :class:`Simulation`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd

from streams.simulator.columns import EventColumns, LabelColumns
from streams.simulator.config import SimulationConfig
from streams.simulator.engine import DayBatch, Engine
from streams.simulator.formats import WireFormatter
from streams.simulator.schema import PropertyTable, customer_ids

ITER_CHUNK = 65_536


class Simulation:
    """A finished run: events and labels in time order, plus the hidden ground truth.

    Attributes
    ----------
    config : SimulationConfig
    events : EventColumns
        Every customer event, sorted by time (then customer, then type).
    labels : LabelColumns
        Every churn label, sorted by time.
    customer_ids : list of str
        ``customer_ids[i]`` is the id of customer index ``i`` (ids follow join order).
    properties : PropertyTable
        Decodes ``events.prop``.
    daily : pandas.DataFrame
        Per-day counters: active, churn-eligible, churns, joins, returns, events by type.
    formatter : WireFormatter
    """

    def __init__(
        self,
        config: SimulationConfig,
        events: EventColumns,
        labels: LabelColumns,
        truth: pd.DataFrame,
        daily: pd.DataFrame,
        properties: PropertyTable,
    ) -> None:
        self.config = config
        self.events = events
        self.labels = labels
        self.customer_ids = customer_ids(config.n_customers)
        self.properties = properties
        self.daily = daily
        self.formatter = WireFormatter(config.seed, self.customer_ids, properties,
                                       config.event_types)
        self._truth = truth

    @property
    def n_events(self) -> int:
        """Number of customer events."""
        return len(self.events)

    def iter_events(self) -> Iterator[dict[str, Any]]:
        """Customer events as wire-format dicts (v1 contract), in time order."""
        for start in range(0, self.n_events, ITER_CHUNK):
            chunk = self.events.slice(start, start + ITER_CHUNK)
            yield from self.formatter.event_records(chunk, start)

    def iter_labels(self) -> Iterator[dict[str, Any]]:
        """Churn labels as wire-format dicts, in time order."""
        yield from self.formatter.label_records(self.labels)

    def ground_truth(self) -> pd.DataFrame:
        """Per-customer ground truth (a copy; see ``outcomes.TRUTH_COLUMNS``).

        Columns: ``customer_id``, ``join_ts``, ``plan`` (initial), ``final_plan``,
        ``billing``, ``churned``, ``churn_ts`` (first churn), ``churn_cause``
        (``"behaviour"``, ``"no_warning"`` or None), ``churn_driver`` (largest risk driver of
        a behaviour churn), ``churned_at_renewal``, ``returned``, ``return_ts``,
        ``n_churns``, the hazard summary ``hazard_mean`` / ``hazard_max`` (daily churn
        probability while eligible) / ``hazard_recent`` (its ~30-day EWMA up to the first
        churn), ``risk_z_mean`` / ``risk_z_at_churn`` (standardised churn intent), and the
        latent traits ``engagement_baseline``, ``price_sensitivity``, ``card_risk``,
        ``ticket_proneness``.
        """
        return self._truth.copy()

    def events_frame(self) -> pd.DataFrame:
        """Events as a DataFrame: event_id, customer_id, event_type, ts, value, properties."""
        return self.formatter.events_frame(self.events, 0)


def simulate(
    config: SimulationConfig,
    on_day: Callable[[DayBatch], None] | None = None,
) -> Simulation:
    """Run a simulation in memory.

    Parameters
    ----------
    config : SimulationConfig
    on_day : callable, optional
        Called with each simulated day's :class:`~streams.simulator.engine.DayBatch`
        (progress reporting, streaming).

    Returns
    -------
    Simulation
    """
    engine = Engine(config)
    events: list[EventColumns] = []
    labels: list[LabelColumns] = []
    for batch in engine.run():
        events.append(batch.events)
        labels.append(batch.labels)
        if on_day is not None:
            on_day(batch)
    return Simulation(
        config,
        EventColumns.concat(events),
        LabelColumns.concat(labels),
        engine.truth(customer_ids(config.n_customers)),
        engine.outcomes.daily_frame(),
        engine.props,
    )
