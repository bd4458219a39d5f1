"""Lock-free loop metrics expose exactly what prometheus_client's would for the same writes."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from app.platform.loop_metrics import LoopCounter, LoopHistogram

BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def _exposition(registry: CollectorRegistry) -> str:
    """The text exposition with creation times blanked (they differ by construction)."""
    return re.sub(r"(_created\S*) \S+", r"\1 T", generate_latest(registry).decode())


def test_counter_and_histogram_expose_what_prometheus_client_exposes() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    counters = (Counter("mecove_webhooks_total", "Deliveries", ["outcome"], registry=theirs),
                LoopCounter("mecove_webhooks_total", "Deliveries", "outcome", registry=ours))
    histograms = (Histogram("mecove_append_seconds", "Append", buckets=BUCKETS, registry=theirs),
                  LoopHistogram("mecove_append_seconds", "Append", BUCKETS, registry=ours))
    for counter in counters:
        counter.labels("accepted").inc()
        counter.labels("accepted").inc(2)
        counter.labels("rejected").inc()
    for histogram in histograms:
        for seconds in (0.0, 0.0001, 0.0005, 0.0031, 0.25, 1.0, 7.5):
            histogram.observe(seconds)

    assert _exposition(ours) == _exposition(theirs)


def test_a_counter_refuses_a_negative_increment() -> None:
    counter = LoopCounter("x_total", "X", "outcome", registry=None)

    with pytest.raises(ValueError):
        counter.labels("a").inc(-1)


def test_a_histogram_refuses_unsorted_buckets() -> None:
    with pytest.raises(ValueError):
        LoopHistogram("x_seconds", "X", (0.1, 0.01), registry=None)
