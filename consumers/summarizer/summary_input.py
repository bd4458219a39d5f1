"""What a summary is made of: the 7-day range, the input hash, the prompt (pure)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

RANGE_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class SummaryInput:
    message_id: str
    text: str
    created_at_ms: int


def summary_range(now_ms: int) -> tuple[int, int]:
    """``last_7_days``: [now - 7 days, now]."""
    return now_ms - RANGE_MS, now_ms


def input_hash(messages: list[SummaryInput]) -> str:
    """sha256 over the ordered (message id, text) pairs; separators keep pairs unambiguous."""
    digest = hashlib.sha256()
    for message in messages:
        digest.update(message.message_id.encode())
        digest.update(b"\x1f")
        digest.update(message.text.encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def fallback_text(count: int) -> str:
    """The summary text written when the LLM gives none (status ``fallback``)."""
    return f"Summary generated for {count} messages."


def summary_prompt(messages: list[SummaryInput]) -> str:
    lines = []
    for message in messages:
        stamp = datetime.fromtimestamp(message.created_at_ms / 1000, tz=UTC)
        lines.append(f"[{stamp:%Y-%m-%d %H:%M}] {message.text}")
    return "\n".join(lines) if lines else "(no messages)"
