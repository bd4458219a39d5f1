"""Meta's webhook bodies for inbound WhatsApp text messages, and their signatures.

The one builder of made-up webhook traffic, for the tests, the benchmarks and
``mecove simulate``. A body is what the WhatsApp Cloud API posts: one entry with one
``messages`` change, its metadata, the senders' contacts and the messages::

    raw = encode(delivery(text_message("15550001234", "hi"), text_message("15550001234", "?")))
    headers = signed_headers(raw, app_secret)   # X-Hub-Signature-256 and Content-Type

A user who adopted a WhatsApp username may have no phone number in the body: Meta names them
only by their business-scoped user id (BSUID, ``from_user_id`` on the message, ``user_id`` on
the contact, with ``profile.username``) and leaves out ``from`` and ``wa_id``::

    delivery(username_text_message("US.13491208655302741918", "hi"),
             usernames={"US.13491208655302741918": "sheena.nelson"})

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
    "username_text_message",
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
    return _text_message({"from": sender}, text, wamid, ts)


def username_text_message(
    bsuid: str, text: str, wamid: str | None = None, ts: int = 1_700_000_000
) -> dict[str, Any]:
    """One inbound text of a user Meta names only by ``bsuid`` (``from_user_id``, no ``from``).

    ``wamid`` defaults to a fresh unique id; ``ts`` is the sender's clock in seconds.
    """
    return _text_message({"from_user_id": bsuid}, text, wamid, ts)


def _text_message(sender: dict[str, str], text: str, wamid: str | None, ts: int
                  ) -> dict[str, Any]:
    return {
        **sender,
        "id": wamid or f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(ts),
        "text": {"body": text},
        "type": "text",
    }


def _sender_of(message: Mapping[str, Any]) -> str:
    """Who sent ``message``: its ``from`` (the phone), else its ``from_user_id`` (the BSUID)."""
    return str(message.get("from") or message["from_user_id"])


def _contact(sender: str, name: str, *, bsuid: str | None = None,
             username: str | None = None) -> dict[str, Any]:
    """The ``contacts`` entry Meta sends for ``sender`` (a phone, or a BSUID with no phone).

    A phone gets ``wa_id``; ``bsuid`` adds ``user_id``; ``username`` goes in the profile. A
    sender that is itself a BSUID (``sender == bsuid``) gets ``user_id`` and no ``wa_id``.
    """
    profile = {"name": name} if username is None else {"name": name, "username": username}
    entry: dict[str, Any] = {"profile": profile}
    if sender != bsuid:
        entry["wa_id"] = sender
    if bsuid is not None:
        entry["user_id"] = bsuid
    return entry


def delivery(
    *messages: dict[str, Any],
    names: Mapping[str, str] | None = None,
    usernames: Mapping[str, str] | None = None,
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
    business_account_id: str = BUSINESS_ACCOUNT_ID,
) -> dict[str, Any]:
    """One webhook carrying ``messages`` in a single change, as Meta posts it.

    Each sender (phone, or BSUID for a username user) gets a contact, named from ``names``
    (sender -> profile name; "Test" if absent) and ``usernames`` (sender -> username, if any).
    """
    names = names or {}
    usernames = usernames or {}
    bsuids = {_sender_of(m): m.get("from_user_id") for m in messages}
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
                    "contacts": [_contact(s, names.get(s, "Test"), bsuid=bsuids[s],
                                          username=usernames.get(s))
                                 for s in sorted(bsuids)],
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
