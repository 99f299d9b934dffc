"""A Prometheus histogram that takes a whole batch of observations in one call.

``prometheus_client.Histogram.observe`` costs about a microsecond per value (a lock, a bucket
search in Python). The worker measures event→score latency for every score, so it observes
a batch at once instead: one ``numpy.searchsorted`` + ``bincount`` per batch. The exposition
is an ordinary histogram (``_bucket{le=...}``, ``_sum``, ``_count``).

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> registry = CollectorRegistry()
>>> h = BulkHistogram("demo_seconds", "Demo.", (0.1, 1.0), registry=registry)
>>> h.observe_many([0.05, 0.1, 0.5, 7.0])
>>> text = generate_latest(registry).decode()
>>> 'demo_seconds_bucket{le="0.1"} 2.0' in text, 'demo_seconds_count 4.0' in text
(True, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class BulkHistogram(Collector):
    """An unlabelled histogram fed a batch at a time (:meth:`observe_many`).

    Buckets are upper bounds, inclusive (``value <= le``), as in Prometheus.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry | None = REGISTRY) -> None:
        if list(buckets) != sorted(buckets) or not buckets:
            raise ValueError("buckets must be sorted and not empty")
        self.name = name
        self.documentation = documentation
        self._bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # last: above every bound
        self._sum = 0.0
        if registry is not None:
            registry.register(self)

    def observe_many(self, values: Iterable[float] | np.ndarray) -> None:
        """Count every value (NaN values are skipped)."""
        arr = np.asarray(values if isinstance(values, np.ndarray) else list(values),
                         dtype=np.float64)
        if arr.size == 0:
            return
        arr = arr[~np.isnan(arr)]
        if arr.size == 0:
            return
        idx = np.searchsorted(self._bounds, arr, side="left")
        self._counts += np.bincount(idx, minlength=self._counts.size)
        self._sum += float(arr.sum())

    def observe(self, value: float) -> None:
        self.observe_many((value,))

    @property
    def count(self) -> int:
        return int(self._counts.sum())

    def collect(self) -> Iterator[Metric]:
        cumulative = np.cumsum(self._counts)
        buckets = [(_le(b), float(c)) for b, c in zip(self._bounds, cumulative[:-1], strict=True)]
        buckets.append(("+Inf", float(cumulative[-1])))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets,
                                    sum_value=self._sum)

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, buckets=[("+Inf", 0.0)],
                                    sum_value=0.0)


def _le(bound: float) -> str:
    """A bucket bound as prometheus_client prints it (``0.1``, ``1.0``)."""
    return repr(float(bound))
