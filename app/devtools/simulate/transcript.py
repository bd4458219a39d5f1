"""The conversation of a simulated run: which message each reply answers, and the lines.

Pure, no I/O. A contextual reply names the message it quotes. A standalone one does not, so
it is given to the sender's oldest message still without a reply: the replier handles a
user's messages in order, and a standalone reply is one whose message had at most one
message after it. Replies are keyed on the phone they go ``to`` or, for a user who has a
username and no phone, the BSUID they go to as ``recipient``.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class UserMessage:
    wamid: str
    sender: str  # the phone, digits with no "+"; for a username user, the BSUID
    name: str
    text: str
    sent_at: float  # monotonic seconds
    username: str | None = None

    @property
    def label(self) -> str:
        """How the conversation shows the sender: ``@username`` or ``+phone``."""
        return f"@{self.username}" if self.username else f"+{self.sender}"


@dataclass(frozen=True, slots=True)
class BotReply:
    to: str | None  # as the replier sent it, e.g. "+12025550100"; None: sent to ``recipient``
    text: str
    context_message_id: str | None
    received_at: float  # monotonic seconds
    recipient: str | None = None  # the BSUID of a user with no known phone

    @property
    def sender(self) -> str:
        """The ``UserMessage.sender`` this reply goes to: the phone's digits, else the BSUID."""
        return digits(self.to) if self.to else self.recipient or ""


def digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


class ReplyMatcher:
    """Messages still waiting for a reply, per sender, in the order they were sent."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[UserMessage]] = defaultdict(list)

    def sent(self, message: UserMessage) -> None:
        self._waiting[message.sender].append(message)

    def answered(self, reply: BotReply) -> UserMessage | None:
        """The message ``reply`` answers (now no longer waiting), or None if none fits."""
        waiting = self._waiting.get(reply.sender, [])
        if reply.context_message_id is not None:
            for index, message in enumerate(waiting):
                if message.wamid == reply.context_message_id:
                    return waiting.pop(index)
            return None
        return waiting.pop(0) if waiting else None

    def forget(self, sender: str, wamids: set[str]) -> None:
        """Stop waiting for replies to these messages (their webhook was not accepted)."""
        self._waiting[sender] = [m for m in self._waiting[sender] if m.wamid not in wamids]

    def waiting(self) -> int:
        return sum(len(messages) for messages in self._waiting.values())


@dataclass
class RunTally:
    """What a run sent and got back, for the closing summary."""

    deliveries: int = 0
    duplicate_deliveries: int = 0
    messages: int = 0
    rejected: int = 0
    contextual: int = 0
    standalone: int = 0
    unmatched: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def replies(self) -> int:
        return self.contextual + self.standalone + self.unmatched


def _clean(text: str) -> str:
    return " ".join(text.split())


def user_line(elapsed_s: float, message: UserMessage) -> str:
    return (f"[{elapsed_s:7.2f}s] user {message.label} ({message.name}): "
            f"{_clean(message.text)}   <{message.wamid}>")


def duplicate_line(elapsed_s: float, label: str, count: int) -> str:
    return (f"[{elapsed_s:7.2f}s] meta {label}: the same delivery again ({count} message(s), "
            "a retry) - expect no new reply")


def rejected_line(elapsed_s: float, label: str, outcome: str) -> str:
    return f"[{elapsed_s:7.2f}s] !!!! webhook for {label} not accepted: {outcome}"


def bot_line(elapsed_s: float, reply: BotReply, answered: UserMessage | None) -> str:
    """``[contextual → quoting <wamid>]`` or ``[standalone]``, and ms since the message.

    The reply is shown going to its phone, else to the ``@username`` of the message it
    answers, else to its BSUID.
    """
    mark = (f"[contextual → quoting {reply.context_message_id}]"
            if reply.context_message_id else "[standalone]")
    timing = (f"{(reply.received_at - answered.sent_at) * 1000:.0f} ms after the message"
              if answered is not None else "answers no message of this run")
    to = reply.to or (answered.label if answered is not None else reply.recipient)
    return f"[{elapsed_s:7.2f}s] bot  {to}: {_clean(reply.text)}   {mark}  {timing}"


def count_reply(tally: RunTally, reply: BotReply, answered: UserMessage | None) -> None:
    if answered is None:
        tally.unmatched += 1
        return
    if reply.context_message_id:
        tally.contextual += 1
    else:
        tally.standalone += 1
    tally.latencies_ms.append((reply.received_at - answered.sent_at) * 1000)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_lines(tally: RunTally, waiting: int, elapsed_s: float) -> list[str]:
    latencies = tally.latencies_ms
    lines = [
        f"sent {tally.messages} messages in {tally.deliveries} deliveries "
        f"(+{tally.duplicate_deliveries} duplicate deliveries) over {elapsed_s:.1f}s; "
        f"{tally.rejected} deliveries not accepted",
        f"replies: {tally.replies} ({tally.contextual} contextual, {tally.standalone} "
        f"standalone, {tally.unmatched} matching no message); still without a reply: {waiting}",
    ]
    if latencies:
        lines.append(f"message → reply at the Graph API: p50 {percentile(latencies, 0.5):.0f} ms, "
                     f"p99 {percentile(latencies, 0.99):.0f} ms, max {max(latencies):.0f} ms")
    return lines
