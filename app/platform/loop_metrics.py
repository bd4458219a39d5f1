"""Prometheus counters and histograms written on one thread (the event loop's), without locks.

prometheus_client's ``Counter.inc`` checks its state and takes a lock; ``Histogram.observe``
takes one lock for the sum and another for the bucket, found by a Python loop over the bounds.
Per webhook that cost more than any other figure the ingress keeps. Where every write runs on
one thread (the ingress's event loop), plain numbers are enough: a scrape, on that thread or
another (a consumer's metrics server), reads each number whole, and like prometheus_client's
reads the buckets one after the other. The exposition is prometheus_client's for the same
metric: ``_total`` and ``_created`` per label value, cumulative ``_bucket`` (``le``),
``_count``, ``_sum`` and ``_created`` for a histogram.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from itertools import accumulate

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["LoopCounter", "LoopHistogram"]


class LoopCount:
    """One label value's count: ``inc(amount=1)``."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        """Add ``amount`` (not negative)."""
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self.value += amount


class LoopCounter(Collector):
    """A counter with one label: ``labels(value).inc()``, as prometheus_client's."""

    def __init__(self, name: str, documentation: str, label: str,
                 registry: CollectorRegistry | None = REGISTRY) -> None:
        self._name = name.removesuffix("_total")
        self._documentation = documentation
        self._label = label
        self._counts: dict[str, LoopCount] = {}
        if registry is not None:
            registry.register(self)

    def labels(self, value: str) -> LoopCount:
        """The count of one label value (made at its first use)."""
        count = self._counts.get(value)
        if count is None:
            count = self._counts[value] = LoopCount()
        return count

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self._name, self._documentation, labels=[self._label])]

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, count in list(self._counts.items()):
            family.add_metric([value], count.value, created=count.created)
        yield family


class LoopHistogram(Collector):
    """A histogram without labels: ``observe(amount)``, as prometheus_client's."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry | None = REGISTRY) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = tuple(float(bound) for bound in buckets)
        if list(self._bounds) != sorted(self._bounds) or self._bounds[-1] == float("inf"):
            raise ValueError("buckets must be sorted, +Inf excluded (it is always added)")
        self._counts = [0] * (len(self._bounds) + 1)  # the last one: above every bound
        self._sum = 0.0
        self._created = time.time()
        if registry is not None:
            registry.register(self)

    def observe(self, amount: float) -> None:
        """Count ``amount`` in the first bucket whose bound is >= it."""
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self._name, self._documentation)]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation)
        cumulative = list(accumulate(self._counts))
        bounds = [*(floatToGoString(bound) for bound in self._bounds), "+Inf"]
        family.add_metric([], list(zip(bounds, cumulative, strict=True)), self._sum)
        family.add_sample(f"{self._name}_created", {}, self._created)
        yield family
