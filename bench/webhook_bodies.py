"""Realistic traffic: signed Meta webhook bodies, and the events the ingress logs for them.

A body is what the WhatsApp Cloud API posts for one inbound text message (one entry, one
change, contacts and metadata included), encoded compactly as Meta sends it; every wamid is
unique. ``received_events`` gives the MessageReceived events of the same messages, for
benchmarks that start at the log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec

from app.ingress.parse_webhook import InboundText, events_from_texts
from app.platform.identities import Sender
from schema.events import MessageReceived

APP_SECRET = "bench-app-secret"
PHONE_NUMBER_ID = "1122334455667"
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

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class SignedBody:
    body: bytes
    signature: str  # X-Hub-Signature-256 value
    sender: str  # wa_id digits, as Meta sends them (no +)
    wamid: str


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    """Meta's ``X-Hub-Signature-256`` of ``body`` (written here, not taken from ``app``)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def wamid_for(tag: str, index: int) -> str:
    """A wamid that looks like Meta's (``wamid.HBgM`` + base64) and is unique per tag+index."""
    tail = base64.b64encode(f"{tag}:{index:012d}".encode()).decode().rstrip("=")
    return f"wamid.HBgM{tag}{tail}"


def sender_for(index: int) -> str:
    """A valid E.164 number without ``+`` (Indian mobile range), distinct per index."""
    return f"91{7_000_000_000 + index:010d}"


def text_webhook(sender: str, wamid: str, text: str, name: str, timestamp: int) -> bytes:
    """The JSON body Meta posts for one inbound text message."""
    return _encoder.encode({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": "15550783881",
                        "phone_number_id": PHONE_NUMBER_ID,
                    },
                    "contacts": [{"profile": {"name": name}, "wa_id": sender}],
                    "messages": [{
                        "from": sender,
                        "id": wamid,
                        "timestamp": str(timestamp),
                        "text": {"body": text},
                        "type": "text",
                    }],
                },
                "field": "messages",
            }],
        }],
    })


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
        body = text_webhook(sender, wamid, f"{_TEXTS[index % len(_TEXTS)]} #{index}",
                            _NAMES[index % len(_NAMES)], timestamp + index // 1000)
        yield SignedBody(body, sign(body, secret), sender, wamid)


def write_bodies_file(path: Path, bodies: Iterator[SignedBody]) -> int:
    """One ``<signature> <body>`` line per body (the wrk script's input); returns the count."""
    written = 0
    with path.open("wb") as out:
        for item in bodies:
            out.write(item.signature.encode() + b" " + item.body + b"\n")
            written += 1
    return written


def received_events(
    tag: str, start: int, count: int, users: int | None = None
) -> list[MessageReceived]:
    """The MessageReceived events the ingress would log for the same messages.

    Built with the ingress's own ``events_from_texts``; one millisecond apart, ending now.
    """
    events: list[MessageReceived] = []
    first_ms = time.time_ns() // 1_000_000 - count
    for offset, index in enumerate(range(start, start + count)):
        sender = sender_for(index if users is None else index % users)
        wamid = wamid_for(tag, index)
        text = f"{_TEXTS[index % len(_TEXTS)]} #{index}"
        received_at = first_ms + offset
        raw = {"from": sender, "id": wamid, "timestamp": str(received_at // 1000),
               "text": {"body": text}, "type": "text"}
        inbound = InboundText(sender=Sender(phone="+" + sender, bsuid=None), wamid=wamid, text=text,
                              client_timestamp=received_at // 1000, raw=raw)
        events += events_from_texts([inbound], received_at_ms=received_at)
    return events
