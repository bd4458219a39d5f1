"""What the console's templates show, built from query rows by pure functions (no I/O).

A conversation becomes a chat timeline (messages and replies in time order, a contextual reply
quoting the message it answers); the overview's rates become an SVG chart's points; times and
ages become short text.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from app.console.queries import MessageRow, RateCounts, ReplyFacts

__all__ = [
    "ChatItem",
    "Delivery",
    "RateChart",
    "age_text",
    "chat_timeline",
    "delivery_of",
    "encode_cursor",
    "parse_cursor",
    "quote_of",
    "rate_chart",
]

QUOTE_LENGTH = 120


class Delivery(enum.Enum):
    """What is known of a reply's delivery, shown as ticks."""

    SENT = "sent"  # Meta accepted it (one tick)
    DRY_RUN = "dry-run"  # recorded, never sent: no WhatsApp credentials
    FAILED = "failed"  # the replier gave up
    UNKNOWN = "unknown"  # not (yet) in the archive

    @property
    def ticks(self) -> str:
        return {"sent": "✓", "dry-run": "○", "failed": "✕", "unknown": "?"}[self.value]


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
    model: str | None = None
    error: str | None = None


def quote_of(text: str | None) -> str:
    """The first ``QUOTE_LENGTH`` characters of a message, one line, for a reply's quote."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= QUOTE_LENGTH else flat[: QUOTE_LENGTH - 1] + "…"


def delivery_of(facts: ReplyFacts | None) -> Delivery:
    """The delivery mark of a reply from what the archive holds about it."""
    if facts is None:
        return Delivery.UNKNOWN
    if facts.sent is not None:
        return Delivery.DRY_RUN if facts.sent.dry_run else Delivery.SENT
    return Delivery.FAILED if facts.failed is not None else Delivery.UNKNOWN


def chat_timeline(messages: list[MessageRow], facts: dict[str, ReplyFacts]) -> list[ChatItem]:
    """Messages (any order) -> bubbles oldest first: each message, then its reply at its time.

    A contextual reply carries a quote of the message it answers; a reply given up on is a
    reply bubble marked failed with the error, at the message's time.
    """
    items: list[ChatItem] = []
    for m in messages:
        items.append(ChatItem(inbound=True, at=m.created_at, text=m.text or "",
                              message_id=m.message_id, content_type=m.content_type))
        fact = facts.get(m.message_id)
        sent = fact.sent if fact else None
        if m.reply_text is not None or sent is not None:
            items.append(ChatItem(
                inbound=False,
                at=m.replied_at or m.created_at,
                text=m.reply_text if m.reply_text is not None else (sent.reply_text if sent
                                                                     else ""),
                message_id=m.message_id,
                quote=quote_of(m.text) if sent is not None and sent.contextual else None,
                fallback=bool(sent and sent.fallback_used),
                delivery=delivery_of(fact),
                model=sent.model if sent else None,
            ))
        elif fact is not None and fact.failed is not None:
            items.append(ChatItem(inbound=False, at=m.created_at, text="", message_id=m.message_id,
                                  delivery=Delivery.FAILED, error=fact.failed.error))
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
