"""What the console's templates show, built from query rows by pure functions (no I/O).

A conversation becomes a chat timeline (messages and replies in time order, a contextual reply
quoting the message it answers, each reply with the ticks of its furthest delivery status and
that status's time or error as a tooltip); the overview's rates become an SVG chart's points;
times and ages become short text.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from app.console.queries import DeliveryStatusRow, MessageRow, RateCounts, ReplyFacts

__all__ = [
    "ChatItem",
    "Delivery",
    "RateChart",
    "age_text",
    "chat_timeline",
    "delivery_of",
    "delivery_title",
    "encode_cursor",
    "parse_cursor",
    "quote_of",
    "rate_chart",
]

QUOTE_LENGTH = 120


class Delivery(enum.Enum):
    """What is known of a reply's delivery, shown as ticks (the value is the CSS class)."""

    SENT = "sent"  # Meta accepted it, or reported it sent (one tick)
    DELIVERED = "delivered"  # on the customer's phone (two ticks)
    READ = "read"  # the customer opened it (two blue ticks)
    FAILED = "failed"  # the replier gave up, or Meta reported it undeliverable
    DRY_RUN = "dry-run"  # recorded, never sent: no WhatsApp credentials
    UNKNOWN = "unknown"  # not (yet) in the archive

    @property
    def ticks(self) -> str:
        return {"sent": "✓", "delivered": "✓✓", "read": "✓✓", "failed": "✗", "dry-run": "○",
                "unknown": "?"}[self.value]


_REPORTED = {"sent": Delivery.SENT, "delivered": Delivery.DELIVERED, "read": Delivery.READ,
             "failed": Delivery.FAILED}


@dataclass(frozen=True, slots=True)
class ChatItem:
    """One bubble: a customer's message (``inbound``) or our reply to one."""

    inbound: bool
    at: datetime
    text: str
    message_id: str
    content_type: str = "text"
    quote: str | None = None  # the answered message, for a contextual reply
    fallback: bool = False
    delivery: Delivery | None = None
    delivery_title: str | None = None  # the ticks' tooltip: status time, or error code/title
    model: str | None = None
    error: str | None = None


def quote_of(text: str | None) -> str:
    """The first ``QUOTE_LENGTH`` characters of a message, one line, for a reply's quote."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= QUOTE_LENGTH else flat[: QUOTE_LENGTH - 1] + "…"


def delivery_of(facts: ReplyFacts | None, status: DeliveryStatusRow | None = None
                ) -> Delivery:
    """The delivery mark of a reply: Meta's furthest reported status when there is one,
    else what the archive holds about the reply."""
    if status is not None and status.status in _REPORTED:
        return _REPORTED[status.status]
    if facts is None:
        return Delivery.UNKNOWN
    if facts.sent is not None:
        return Delivery.DRY_RUN if facts.sent.dry_run else Delivery.SENT
    return Delivery.FAILED if facts.failed is not None else Delivery.UNKNOWN


def delivery_title(delivery: Delivery, status: DeliveryStatusRow | None) -> str:
    """The ticks' tooltip: ``read 2026-05-01 12:00:03 UTC``, or for a reply Meta reported
    failed ``failed: 131047 Re-engagement message``; the bare mark name otherwise."""
    if status is None or _REPORTED.get(status.status) is not delivery:
        return delivery.value
    if delivery is Delivery.FAILED:
        detail = " ".join(str(part) for part in (status.error_code, status.error_title)
                          if part is not None)
        return f"failed: {detail}" if detail else "failed"
    if status.status_at is None:
        return delivery.value
    return f"{delivery.value} {status.status_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def chat_timeline(messages: list[MessageRow], facts: dict[str, ReplyFacts],
                  statuses: dict[str, DeliveryStatusRow] | None = None) -> list[ChatItem]:
    """Messages (any order), their archived reply facts and their replies' delivery statuses
    (both by message id) -> bubbles oldest first: each message, then its reply at its time.

    A contextual reply carries a quote of the message it answers; a reply given up on is a
    reply bubble marked failed with the error, at the message's time.
    """
    statuses = statuses or {}
    items: list[ChatItem] = []
    for m in messages:
        items.append(ChatItem(inbound=True, at=m.created_at, text=m.text or "",
                              message_id=m.message_id, content_type=m.content_type))
        fact = facts.get(m.message_id)
        sent = fact.sent if fact else None
        status = statuses.get(m.message_id)
        if m.reply_text is not None or sent is not None:
            delivery = delivery_of(fact, status)
            items.append(ChatItem(
                inbound=False,
                at=m.replied_at or m.created_at,
                text=m.reply_text if m.reply_text is not None else (sent.reply_text if sent
                                                                     else ""),
                message_id=m.message_id,
                quote=quote_of(m.text) if sent is not None and sent.contextual else None,
                fallback=bool(sent and sent.fallback_used),
                delivery=delivery,
                delivery_title=delivery_title(delivery, status),
                model=sent.model if sent else None,
            ))
        elif fact is not None and fact.failed is not None:
            items.append(ChatItem(inbound=False, at=m.created_at, text="", message_id=m.message_id,
                                  delivery=Delivery.FAILED, delivery_title="the replier gave up",
                                  error=fact.failed.error))
    # Stable: a reply stamped at its message's time stays after it.
    return sorted(items, key=lambda item: item.at)


def age_text(ms: int | None) -> str:
    """A duration in ms as short text: ``-``, ``850 ms``, ``12.5 s``, ``7 min``, ``3.0 h``."""
    if ms is None:
        return "-"
    if ms < 1_000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    if ms < 3_600_000:
        return f"{ms // 60_000} min"
    return f"{ms / 3_600_000:.1f} h"


def encode_cursor(at: datetime, message_id: str) -> str:
    """The ``before`` cursor of a conversation page: the oldest message shown."""
    return f"{at.astimezone(UTC).isoformat()}_{message_id}"


def parse_cursor(raw: str) -> tuple[datetime, str]:
    """``encode_cursor``'s text back to (created_at, id); ValueError when malformed."""
    at, sep, message_id = raw.rpartition("_")
    if not sep:
        raise ValueError("cursor without a message id")
    parsed = datetime.fromisoformat(at)
    if parsed.tzinfo is None:
        raise ValueError("cursor time without a zone")
    return parsed, str(uuid.UUID(message_id))


@dataclass(frozen=True, slots=True)
class RateChart:
    """An SVG line chart of two rates (per second) over equal time buckets."""

    width: int
    height: int
    messages_points: str
    replies_points: str
    peak_per_s: float
    minutes: int
    capped: bool


def _points(counts: dict[int, int], buckets: int, seconds: float, peak: float, width: int,
            height: int) -> str:
    step = width / max(buckets - 1, 1)
    return " ".join(
        f"{i * step:.1f},{height - (counts.get(i, 0) / seconds) / peak * height:.1f}"
        for i in range(buckets)
    )


def rate_chart(counts: RateCounts, *, buckets: int, bucket_ms: int, width: int = 600,
               height: int = 120) -> RateChart:
    """Counts per bucket -> polyline points, y scaled so the busiest bucket touches the top."""
    seconds = bucket_ms / 1000
    busiest = max([*counts.messages.values(), *counts.replies.values(), 0])
    peak = max(busiest / seconds, 1.0)
    return RateChart(
        width=width, height=height,
        messages_points=_points(counts.messages, buckets, seconds, peak, width, height),
        replies_points=_points(counts.replies, buckets, seconds, peak, width, height),
        peak_per_s=peak, minutes=buckets * bucket_ms // 60_000, capped=counts.capped,
    )
