"""Where the webhook → send time goes, per message, from records every side keeps anyway.

No timer is added to the product: each stage is read from something that already carries a
time, all on this machine's clock:

* **posted** / **answered**: the load generator's clock around the webhook request;
* **logged**: the millisecond part of the MessageReceived entry id (Redis's clock at XADD);
* **typing**: the fake Graph API's ``received_at`` of the read mark with "typing…", which the
  replier sends as it starts on the message (after two Redis round trips);
* **LLM asked** / **LLM answered**: the fake Groq's ``received_at`` / ``answered_at``;
* **sent**: the fake Graph API's ``received_at`` of the send;
* **recorded**: the millisecond part of the ReplySent entry id.

Every message of a latency run has its own sender, so the sender ties the records together
(the LLM request names its message by the ``#<n>`` ending its text).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec

from app.platform.eventlog.entries import as_text, decode_event
from bench.figures import percentile
from bench.numbered_messages import sender_for
from schema.events import MessageReceived, ReplySent

__all__ = ["STAGES", "TAIL_STEPS", "FakeRecord", "MessageTimes", "stage_table", "tail_table",
           "times_by_sender"]

# The stages in pipeline order, by name: each is a field of MessageTimes.
STAGES = ("answered", "logged", "typing", "llm_asked", "llm_answered", "sent", "recorded")
_MESSAGE_NUMBER = re.compile(r"#(\d+)\s*$")


class FakeRecord(msgspec.Struct):
    """One request as a fake API recorded it (the fields this module reads)."""

    body: dict[str, object] | None
    received_at: float
    status: int | None = None
    answered_at: float | None = None


@dataclass(slots=True)
class MessageTimes:
    """Wall-clock seconds of one message at each stage; None when the stage was not seen."""

    posted: float
    answered: float | None = None
    logged: float | None = None
    typing: float | None = None
    llm_asked: float | None = None
    llm_answered: float | None = None
    sent: float | None = None
    recorded: float | None = None


def _entry_seconds(entry_id: bytes | str) -> float:
    return int(as_text(entry_id).partition("-")[0]) / 1000


def _llm_sender(body: dict[str, object] | None) -> str | None:
    """The sender (``+`` E.164) of the message an LLM request answers, from its last line."""
    messages = body.get("messages") if body else None
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    content = last.get("content") if isinstance(last, dict) else None
    match = _MESSAGE_NUMBER.search(content) if isinstance(content, str) else None
    return "+" + sender_for(int(match.group(1))) if match else None


def times_by_sender(
    posted: Iterable[tuple[str, str, float, float]],
    entries: Iterable[tuple[bytes | str, dict[bytes, bytes]]],
    graph: Sequence[FakeRecord],
    groq: Sequence[FakeRecord],
) -> dict[str, MessageTimes]:
    """The stage times of each posted message, by sender.

    ``posted``: (sender ``+`` E.164, wamid, posted at, answered at) per webhook; ``entries``:
    the stream's entries; ``graph`` / ``groq``: the fakes' records.
    """
    times: dict[str, MessageTimes] = {}
    by_wamid: dict[str, str] = {}
    for sender, wamid, at, answered in posted:
        times[sender] = MessageTimes(at, answered)
        by_wamid[wamid] = sender
    sender_of_message: dict[str, str] = {}
    for entry_id, fields in entries:
        try:
            event = decode_event(fields)
        except Exception:  # noqa: BLE001 - anything else in the stream is not a stage
            continue
        if isinstance(event, MessageReceived) and event.sender_phone in times:
            sender_of_message[event.message_id] = event.sender_phone
            times[event.sender_phone].logged = _entry_seconds(entry_id)
        elif isinstance(event, ReplySent) and event.message_id in sender_of_message:
            times[sender_of_message[event.message_id]].recorded = _entry_seconds(entry_id)
    for record in graph:
        body = record.body or {}
        if body.get("status") == "read":
            sender = by_wamid.get(str(body.get("message_id")))
            if sender is not None and times[sender].typing is None:
                times[sender].typing = record.received_at
        elif record.status == 200 and (to := body.get("to")) in times:
            assert isinstance(to, str)
            if times[to].sent is None:
                times[to].sent = record.received_at
    for record in groq:
        sender = _llm_sender(record.body)
        if sender in times and times[sender].llm_asked is None:
            times[sender].llm_asked = record.received_at
            times[sender].llm_answered = record.answered_at
    return times


def stage_table(times: Iterable[MessageTimes]) -> str:
    """Per stage: p50 / p99 of the time since the webhook was posted, and of the step from
    the previous stage, in ms, over the messages that reached both."""
    rows = list(times)
    lines = [f"{'stage':<14}{'n':>6}{'since posted p50':>18}{'p99':>9}{'step p50':>10}{'p99':>9}"]
    previous = "posted"
    for stage in STAGES:
        since = sorted((t - r.posted) * 1000 for r in rows if (t := getattr(r, stage)) is not None)
        steps = sorted(
            (t - p) * 1000
            for r in rows
            if (t := getattr(r, stage)) is not None and (p := getattr(r, previous)) is not None
        )
        lines.append(
            f"{stage:<14}{len(since):>6}{percentile(since, 0.5):>18.1f}"
            f"{percentile(since, 0.99):>9.1f}{percentile(steps, 0.5):>10.1f}"
            f"{percentile(steps, 0.99):>9.1f}"
        )
        previous = stage
    return "\n".join(lines)


# The steps webhook -> send splits into, for the slowest messages (``tail_table``): to the
# log; the replier's queue, up to its first call out (the LLM request and the "typing…" read
# mark go out side by side); its first call to the LLM's answer; the LLM's answer to the send
# (waiting for the read mark's answer, the pace and claim, the send itself).
TAIL_STEPS = ("to the log", "replier queue", "to LLM answer", "to send")


def _tail_steps(row: MessageTimes) -> tuple[float, float, float, float] | None:
    """The ``TAIL_STEPS`` of one sent message in ms (they add up to webhook -> send)."""
    if None in (row.logged, row.llm_asked, row.llm_answered, row.sent):
        return None
    assert row.logged is not None and row.llm_asked is not None
    assert row.llm_answered is not None and row.sent is not None
    start = min(row.llm_asked, row.typing) if row.typing is not None else row.llm_asked
    return ((row.logged - row.posted) * 1000, (start - row.logged) * 1000,
            (row.llm_answered - start) * 1000, (row.sent - row.llm_answered) * 1000)


def tail_table(times: Iterable[MessageTimes], fraction: float = 0.01) -> str:
    """Where the slowest ``fraction`` of the sent messages (by webhook → send) spent their
    time: per ``TAIL_STEPS`` step, its p50 and max among them and how many of them it was the
    longest step of; then when they were posted (seconds after the first webhook), to tell one
    stall that held a burst of messages from a tail spread over the run."""
    rows = [(r, steps) for r in times if (steps := _tail_steps(r)) is not None]
    if not rows:
        return "tail: no message was sent"
    first = min(r.posted for r, _ in rows)
    rows.sort(key=lambda item: sum(item[1]))
    tail = rows[len(rows) - max(1, math.ceil(fraction * len(rows))):]
    longest = Counter(TAIL_STEPS[max(range(len(TAIL_STEPS)), key=lambda i: steps[i])]
                      for _, steps in tail)
    total = [sum(steps) for _, steps in tail]
    lines = [f"slowest {len(tail)} of {len(rows)} (webhook->send {total[0]:.1f}-{total[-1]:.1f}"
             f" ms), by step:",
             f"{'step':<16}{'p50':>8}{'max':>9}{'longest in':>12}"]
    for index, name in enumerate(TAIL_STEPS):
        values = sorted(steps[index] for _, steps in tail)
        lines.append(f"{name:<16}{percentile(values, 0.5):>8.1f}{percentile(values, 1.0):>9.1f}"
                     f"{longest[name]:>12}")
    posted = sorted(r.posted - first for r, _ in tail)
    windows = Counter(math.floor(t * 10) / 10 for t in posted)
    busiest = ", ".join(f"{t:.1f}s: {n}" for t, n in windows.most_common(5))
    lines.append(f"posted at {posted[0]:.1f}-{posted[-1]:.1f}s; {len(windows)} distinct "
                 f"100 ms windows; most: {busiest}")
    return "\n".join(lines)
