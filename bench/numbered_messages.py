"""Numbered messages for the benchmarks: message #i as a signed webhook body or as its event.

Message #i of a tag has its own wamid, a sender chosen by i, and a realistic text. As a body it
is what the WhatsApp Cloud API posts for one inbound text message (built by
``app.devtools.webhook_bodies``), signed with the benchmark's app secret; ``received_events``
gives the MessageReceived events of the same messages, for benchmarks that start at the log.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.devtools import webhook_bodies
from app.ingress.parse_webhook import InboundText, events_from_texts
from app.platform.identities import Sender
from schema.events import MessageReceived

APP_SECRET = "bench-app-secret"
PHONE_NUMBER_ID = webhook_bodies.PHONE_NUMBER_ID
WEBHOOK_PATH = "/webhooks/whatsapp"

_TEXTS = (
    "Hi! Is the store open this Sunday?",
    "Can you remind me what I ordered last week?",
    "thanks 🙏 that helps a lot",
    "I need to change my delivery address to 221B Baker Street",
    "What's the price of the blue one in size M?",
    "ok",
    "Namaste, mera order kab aayega?",
    "Please call me back after 6pm, I'm in meetings all day",
)
_NAMES = ("Asha", "Ravi", "Maria", "John", "Wei", "Fatima", "Lucas", "Priya")


@dataclass(frozen=True, slots=True)
class SignedBody:
    body: bytes
    signature: str  # X-Hub-Signature-256 value
    sender: str  # wa_id digits, as Meta sends them (no +)
    wamid: str


def wamid_for(tag: str, index: int) -> str:
    """A wamid that looks like Meta's (``wamid.HBgM`` + base64) and is unique per tag+index."""
    tail = base64.b64encode(f"{tag}:{index:012d}".encode()).decode().rstrip("=")
    return f"wamid.HBgM{tag}{tail}"


def sender_for(index: int) -> str:
    """A valid E.164 number without ``+`` (Indian mobile range), distinct per index."""
    return f"91{7_000_000_000 + index:010d}"


def _text_of(index: int) -> str:
    return f"{_TEXTS[index % len(_TEXTS)]} #{index}"


def signed_bodies(
    tag: str, start: int, count: int, *, senders: int | None = None,
    secret: str = APP_SECRET, timestamp: int = 1_764_000_000,
) -> Iterator[SignedBody]:
    """``count`` signed bodies numbered from ``start``.

    ``senders`` None gives every message its own sender; otherwise senders are cycled, so each
    user sends several messages (as in real traffic).
    """
    for index in range(start, start + count):
        sender = sender_for(index if senders is None else index % senders)
        wamid = wamid_for(tag, index)
        message = webhook_bodies.text_message(sender, _text_of(index), wamid,
                                              timestamp + index // 1000)
        body = webhook_bodies.encode(webhook_bodies.delivery(
            message, names={sender: _NAMES[index % len(_NAMES)]}))
        yield SignedBody(body, webhook_bodies.hub_signature(body, secret), sender, wamid)


def write_bodies_file(path: Path, bodies: Iterator[SignedBody]) -> int:
    """One ``<signature> <body>`` line per body (the wrk script's input); returns the count."""
    written = 0
    with path.open("wb") as out:
        for item in bodies:
            out.write(item.signature.encode() + b" " + item.body + b"\n")
            written += 1
    return written


def inbound_texts(
    tag: str, start: int, count: int, users: int | None = None
) -> list[tuple[InboundText, int]]:
    """The messages as the ingress parses them, each with its receipt time in ms (one
    millisecond apart, ending now)."""
    texts: list[tuple[InboundText, int]] = []
    first_ms = time.time_ns() // 1_000_000 - count
    for offset, index in enumerate(range(start, start + count)):
        sender = sender_for(index if users is None else index % users)
        wamid = wamid_for(tag, index)
        text = _text_of(index)
        received_at = first_ms + offset
        raw = webhook_bodies.text_message(sender, text, wamid, received_at // 1000)
        texts.append((InboundText(sender=Sender(phone="+" + sender, bsuid=None), wamid=wamid,
                                  text=text, client_timestamp=received_at // 1000, raw=raw),
                      received_at))
    return texts


def received_events(
    tag: str, start: int, count: int, users: int | None = None
) -> list[MessageReceived]:
    """The MessageReceived events the ingress would log for the same messages.

    Built with the ingress's own ``events_from_texts``; one millisecond apart, ending now.
    """
    events: list[MessageReceived] = []
    for inbound, received_at in inbound_texts(tag, start, count, users):
        events += events_from_texts([inbound], received_at_ms=received_at)
    return events
