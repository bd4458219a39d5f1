"""The console's view models: chat timeline, delivery marks, quotes, ages, cursors, chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.console.queries import DeliveryStatusRow, MessageRow, RateCounts, ReplyFacts
from app.console.view_models import (
    Delivery,
    age_text,
    chat_timeline,
    delivery_of,
    delivery_title,
    encode_cursor,
    parse_cursor,
    quote_of,
    rate_chart,
)
from schema.events import ReplyFailed, ReplySent

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
M1, M2 = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"


def message(message_id: str, seconds: int, text: str, reply: str | None = None,
            reply_seconds: int | None = None) -> MessageRow:
    return MessageRow(message_id=message_id, created_at=T0 + timedelta(seconds=seconds),
                      content_type="text", text=text,
                      replied_at=T0 + timedelta(seconds=reply_seconds)
                      if reply_seconds is not None else None, reply_text=reply)


def sent(message_id: str, *, contextual: bool = False, fallback: bool = False,
         dry_run: bool = False) -> ReplySent:
    return ReplySent(event_id="e", occurred_at=0, message_id=message_id, user_id="u",
                     reply_text="r", replied_at=0, contextual=contextual,
                     outbound_message_id=None if dry_run else "wamid.out", model="m",
                     fallback_used=fallback, dry_run=dry_run)


def failed(message_id: str) -> ReplyFailed:
    return ReplyFailed(event_id="f", occurred_at=0, message_id=message_id, user_id="u",
                       attempts=3, error="131047", retryable=False)


def test_a_contextual_reply_quotes_the_message_it_answers_after_a_later_message() -> None:
    rows = [message(M2, 5, "second", "answer 2", 9), message(M1, 0, "first?", "answer 1", 7)]
    facts = {M1: ReplyFacts(sent=sent(M1, contextual=True), failed=None),
             M2: ReplyFacts(sent=sent(M2), failed=None)}
    items = chat_timeline(rows, facts)
    assert [(i.inbound, i.text) for i in items] == [
        (True, "first?"), (True, "second"), (False, "answer 1"), (False, "answer 2")]
    assert items[2].quote == "first?" and items[3].quote is None
    assert items[2].delivery is Delivery.SENT


@pytest.mark.parametrize(("facts", "expected"), [
    (None, Delivery.UNKNOWN),
    (ReplyFacts(sent=sent(M1), failed=None), Delivery.SENT),
    (ReplyFacts(sent=sent(M1, dry_run=True), failed=None), Delivery.DRY_RUN),
    (ReplyFacts(sent=None, failed=failed(M1)), Delivery.FAILED),
])
def test_the_delivery_mark_follows_what_the_archive_knows(
    facts: ReplyFacts | None, expected: Delivery
) -> None:
    assert delivery_of(facts) is expected


def test_a_failed_reply_is_a_failed_bubble_with_its_error_and_fallbacks_are_marked() -> None:
    rows = [message(M1, 0, "hi"), message(M2, 3, "ok", "Noted.", 4)]
    facts = {M1: ReplyFacts(sent=None, failed=failed(M1)),
             M2: ReplyFacts(sent=sent(M2, fallback=True), failed=None)}
    items = chat_timeline(rows, facts)
    assert [(i.inbound, i.error, i.fallback) for i in items] == [
        (True, None, False), (False, "131047", False), (True, None, False),
        (False, None, True)]
    assert items[1].delivery is Delivery.FAILED and items[1].delivery.ticks == "✗"


def status(kind: str, code: int | None = None, title: str | None = None) -> DeliveryStatusRow:
    return DeliveryStatusRow(status=kind, status_at=T0 + timedelta(seconds=30), error_code=code,
                             error_title=title)


@pytest.mark.parametrize(("reported", "expected", "ticks"), [
    (status("sent"), Delivery.SENT, "✓"),
    (status("delivered"), Delivery.DELIVERED, "✓✓"),
    (status("read"), Delivery.READ, "✓✓"),
    (status("failed", 131047), Delivery.FAILED, "✗"),
    (status("deleted"), Delivery.SENT, "✓"),  # a status we do not rank: the archive decides
])
def test_meta_s_furthest_status_decides_the_ticks(
    reported: DeliveryStatusRow, expected: Delivery, ticks: str
) -> None:
    delivery = delivery_of(ReplyFacts(sent=sent(M1), failed=None), reported)
    assert delivery is expected and delivery.ticks == ticks


def test_a_read_reply_shows_when_and_a_failed_one_its_error_code_and_title() -> None:
    rows = [message(M1, 0, "hi", "hello", 1), message(M2, 3, "ok", "Noted.", 4)]
    facts = {M1: ReplyFacts(sent=sent(M1), failed=None), M2: ReplyFacts(sent=sent(M2), failed=None)}
    statuses = {M1: status("read"), M2: status("failed", 131047, "Re-engagement message")}
    [_, read, _, undelivered] = chat_timeline(rows, facts, statuses)
    assert read.delivery is Delivery.READ
    assert read.delivery_title == "read 2026-05-01 12:00:30 UTC"
    assert undelivered.delivery is Delivery.FAILED and undelivered.text == "Noted."
    assert undelivered.delivery_title == "failed: 131047 Re-engagement message"


@pytest.mark.parametrize(("reported", "title"), [
    (None, "sent"),
    (status("failed"), "failed"),
    (status("failed", title="Message undeliverable"), "failed: Message undeliverable"),
    (DeliveryStatusRow(status="delivered", status_at=None, error_code=None, error_title=None),
     "delivered"),
])
def test_a_tooltip_says_only_what_is_known(reported: DeliveryStatusRow | None,
                                           title: str) -> None:
    assert delivery_title(delivery_of(ReplyFacts(sent=sent(M1), failed=None), reported),
                          reported) == title


def test_a_reply_the_archive_has_not_reached_yet_still_shows_with_an_unknown_mark() -> None:
    [_, reply] = chat_timeline([message(M1, 0, "hi", "hello", 1)], {})
    assert reply.text == "hello" and reply.delivery is Delivery.UNKNOWN and reply.quote is None


def test_a_quote_is_one_line_and_shortened() -> None:
    assert quote_of("a\n  b\tc") == "a b c"
    assert quote_of(None) == ""
    long = quote_of("x" * 500)
    assert len(long) == 120 and long.endswith("…")


@pytest.mark.parametrize(("ms", "text"), [
    (None, "-"), (850, "850 ms"), (12_500, "12.5 s"), (420_000, "7 min"), (10_800_000, "3.0 h")])
def test_ages_read_as_short_text(ms: int | None, text: str) -> None:
    assert age_text(ms) == text


def test_a_cursor_round_trips_and_junk_is_refused() -> None:
    at = T0 + timedelta(microseconds=123)
    assert parse_cursor(encode_cursor(at, M1)) == (at, M1)
    for junk in ("junk", "2026-05-01T12:00:00_notauuid", f"2026-05-01T12:00:00_{M1}"):
        with pytest.raises(ValueError):
            parse_cursor(junk)


def test_the_chart_scales_the_busiest_bucket_to_the_top() -> None:
    chart = rate_chart(RateCounts(messages={0: 40, 2: 20}, replies={1: 10}, capped=False),
                       buckets=3, bucket_ms=20_000, width=200, height=100)
    assert chart.peak_per_s == 2.0 and chart.minutes == 1
    assert chart.messages_points == "0.0,0.0 100.0,100.0 200.0,50.0"
    assert chart.replies_points == "0.0,100.0 100.0,75.0 200.0,100.0"


def test_an_idle_chart_is_a_flat_line_at_the_bottom() -> None:
    chart = rate_chart(RateCounts(messages={}, replies={}, capped=False), buckets=2,
                       bucket_ms=1_000, width=10, height=10)
    assert chart.messages_points == "0.0,10.0 10.0,10.0" and chart.peak_per_s == 1.0
