"""Prometheus metrics of every process (ingress at ``/metrics``, consumers on a metrics port).

The ingress's two per-delivery metrics are ``LoopCounter`` and ``LoopHistogram``
(``loop_metrics``): prometheus_client takes a lock for every increment (two for an
observation, plus a Python loop over the buckets), which cost more per webhook than any
other figure the ingress keeps. They are only ever written on the event loop's thread.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from app.platform.loop_metrics import LoopCounter, LoopHistogram

WEBHOOKS = LoopCounter(
    "mecove_webhooks_total", "Webhook deliveries by outcome", "outcome"
)  # accepted, duplicate, ignored, rejected, unavailable, malformed, too_large
APPEND_SECONDS = LoopHistogram(
    "mecove_append_seconds", "Time to append one delivery's events to the log",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
PROCESSED = Counter("mecove_consumer_processed_total", "Entries handled", ["group"])
FAILED = Counter("mecove_consumer_failed_total", "Failed attempts", ["group"])
RETRIED = Counter("mecove_consumer_retried_total", "Retries scheduled", ["group"])
DEAD_LETTERED = Counter("mecove_consumer_dead_lettered_total", "Entries dead-lettered", ["group"])
HANDLER_SECONDS = Histogram(
    "mecove_handler_seconds", "Time to handle one batch", ["group"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
GROUP_LAG = Gauge("mecove_group_lag", "Entries not yet delivered to the group", ["group"])
GROUP_PENDING = Gauge("mecove_group_pending", "Entries delivered, not acknowledged", ["group"])
LLM_SECONDS = Histogram(
    "mecove_llm_seconds", "LLM call latency", ["purpose"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
)
LLM_FALLBACKS = Counter("mecove_llm_fallbacks_total", "LLM answers replaced by the fallback",
                        ["purpose"])
GRAPH_SENDS = Counter("mecove_graph_sends_total", "Graph API sends by outcome", ["outcome"])
IDENTITY_LINKS = Counter("mecove_identity_links_total",
                         "Phone or BSUID identities linked to a user for the first time")
IDENTITY_CONFLICTS = Counter(
    "mecove_identity_conflicts_total",
    "Messages whose phone was already linked to another user than their BSUID's (first kept)")
UNREADABLE_MESSAGES = Counter(
    "mecove_unreadable_messages_total",
    "Message objects kept raw because this version could not read them", ["reason"])
DELIVERY_STATUSES = Counter("mecove_delivery_statuses_total",
                            "Meta's status reports on our replies", ["status"])
DELIVERY_FAILURES = Counter("mecove_delivery_failures_total",
                            "Replies Meta reported as failed, by Meta's error code", ["code"])
