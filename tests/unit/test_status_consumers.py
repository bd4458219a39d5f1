"""``mecove status`` leaves out the consumers of earlier runs unless ``--all``."""

from __future__ import annotations

from app.operations.commands import without_idle_consumers
from app.operations.log_status import ConsumerStatus, GroupStatus, LogStatus


def test_consumers_idle_for_long_with_nothing_pending_are_left_out_and_counted() -> None:
    consumers = [ConsumerStatus("live", pending=0, idle_ms=800),
                 ConsumerStatus("ghost", pending=0, idle_ms=3_600_000),
                 ConsumerStatus("dead-holding-work", pending=2, idle_ms=3_600_000)]
    status = LogStatus(partitions=[], groups=[GroupStatus(
        group="replier", partition=0, lag=0, pending=2, oldest_pending_age_ms=10,
        last_delivered_id="1-0", consumers=consumers)])

    shown, hidden = without_idle_consumers(status, idle_ms=60_000)

    assert [c.name for c in shown.groups[0].consumers] == ["live", "dead-holding-work"]
    assert hidden == 1
