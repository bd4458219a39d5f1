"""Meta's webhook bodies for inbound WhatsApp text messages, and their signatures.

The one builder of made-up webhook traffic, for the tests, the benchmarks and
``mecove simulate``. A body is what the WhatsApp Cloud API posts: one entry with one
``messages`` change, its metadata, the senders' contacts and the messages::

    raw = encode(delivery(text_message("15550001234", "hi"), text_message("15550001234", "?")))
    headers = signed_headers(raw, app_secret)   # X-Hub-Signature-256 and Content-Type

Other kinds of webhook (statuses, media, system changes) are best taken from Meta's own
examples; the tests keep a set of them in ``tests/fixtures``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = [
    "BUSINESS_ACCOUNT_ID",
    "DISPLAY_PHONE_NUMBER",
    "PHONE_NUMBER_ID",
    "delivery",
    "encode",
    "hub_signature",
    "signed_headers",
    "text_message",
]

# The business the bodies are addressed to, unless a caller names its own.
PHONE_NUMBER_ID = "1122334455667"
DISPLAY_PHONE_NUMBER = "15550001111"
BUSINESS_ACCOUNT_ID = "1234567890987654321"


def text_message(
    sender: str, text: str, wamid: str | None = None, ts: int = 1_700_000_000
) -> dict[str, Any]:
    """One inbound text message as it stands in a webhook.

    ``sender`` is Meta's ``from`` (digits, no ``+``); ``wamid`` defaults to a fresh unique id;
    ``ts`` is the sender's clock in seconds.
    """
    return {
        "from": sender,
        "id": wamid or f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(ts),
        "text": {"body": text},
        "type": "text",
    }


def delivery(
    *messages: dict[str, Any],
    names: Mapping[str, str] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
    business_account_id: str = BUSINESS_ACCOUNT_ID,
) -> dict[str, Any]:
    """One webhook carrying ``messages`` in a single change, as Meta posts it.

    Each sender gets a contact, named from ``names`` (sender -> profile name; "Test" if absent).
    """
    names = names or {}
    senders = sorted({m["from"] for m in messages})
    return {
        "object": "whatsapp_business_account",
        "entry": [{
            "id": business_account_id,
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": display_phone_number,
                                 "phone_number_id": phone_number_id},
                    "contacts": [{"profile": {"name": names.get(s, "Test")}, "wa_id": s}
                                 for s in senders],
                    "messages": list(messages),
                },
            }],
        }],
    }


def encode(body: Mapping[str, Any]) -> bytes:
    """``body`` as the bytes Meta posts: compact JSON, non-ASCII escaped."""
    return json.dumps(body, separators=(",", ":")).encode("ascii")


def hub_signature(raw: bytes, secret: str) -> str:
    """Meta's ``X-Hub-Signature-256`` value for ``raw`` signed with the app ``secret``."""
    # Computed here rather than with the ingress's own code, so a bug there cannot hide.
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def signed_headers(raw: bytes, secret: str) -> dict[str, str]:
    """The headers Meta posts ``raw`` with: its signature and the JSON content type."""
    return {"X-Hub-Signature-256": hub_signature(raw, secret), "Content-Type": "application/json"}
