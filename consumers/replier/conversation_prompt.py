"""The conversation as the LLM sees it: alternating ``User:`` / ``Bot:`` lines (pure)."""

from __future__ import annotations

from dataclasses import dataclass

CONTEXT_MESSAGES = 10


@dataclass(frozen=True, slots=True)
class Turn:
    """One inbound message and the reply it got, if any."""

    message_id: str
    text: str
    reply: str | None


def format_conversation(turns: list[Turn], limit: int = CONTEXT_MESSAGES) -> str:
    """The last ``limit`` turns, oldest first; the last line is the message to answer."""
    lines: list[str] = []
    for turn in turns[-limit:]:
        lines.append(f"User: {turn.text}")
        if turn.reply:
            lines.append(f"Bot: {turn.reply}")
    return "\n".join(lines)
