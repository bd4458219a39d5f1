"""Contextual (quoted) or standalone: decided at send time (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ReplyMode(Enum):
    STANDALONE = "standalone"
    CONTEXTUAL = "contextual"


@dataclass(frozen=True, slots=True)
class ReplyModeRule:
    after_count: int = 1  # contextual when more than this many messages came after
    stale_ms: int = 10_000  # contextual when more than this much time passed since receipt


def decide_reply_mode(
    messages_after: int, received_at_ms: int, now_ms: int, rule: ReplyModeRule = ReplyModeRule()
) -> ReplyMode:
    """CONTEXTUAL (quote the message) when more than ``rule.after_count`` messages came after
    it or more than ``rule.stale_ms`` passed since it came (defaults: 1 message, 10 s);
    STANDALONE otherwise."""
    if messages_after > rule.after_count or now_ms - received_at_ms > rule.stale_ms:
        return ReplyMode.CONTEXTUAL
    return ReplyMode.STANDALONE
