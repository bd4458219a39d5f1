"""Building realistic Meta webhook bodies (and their signatures) for tests."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from app.ingress.signature import sign_body

# A copy of ../shared/fixtures/meta-webhooks-pywa (MIT, from pywa), kept in the repo for CI.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "meta-webhooks-pywa"


def fixture_variants() -> list[tuple[str, str, dict[str, Any]]]:
    """Every (file, variant, body) of the Meta webhook fixtures."""
    out = []
    for path in sorted(FIXTURES.glob("*.json")):
        for variant, body in json.loads(path.read_text()).items():
            out.append((path.name, variant, body))
    return out


def fixture_body(file: str, variant: str) -> dict[str, Any]:
    return json.loads((FIXTURES / file).read_text())[variant]


def text_message(sender: str, text: str, wamid: str | None = None, ts: int = 1_700_000_000
                 ) -> dict[str, Any]:
    return {
        "from": sender,
        "id": wamid or f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(ts),
        "text": {"body": text},
        "type": "text",
    }


def delivery(*messages: dict[str, Any], phone_number_id: str = "1122334455667") -> dict[str, Any]:
    """One webhook carrying ``messages`` in a single change, as Meta posts it."""
    senders = sorted({m["from"] for m in messages})
    return {
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "1234567890987654321",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550001111",
                                 "phone_number_id": phone_number_id},
                    "contacts": [{"profile": {"name": "Test"}, "wa_id": s} for s in senders],
                    "messages": list(messages),
                },
            }],
        }],
    }


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def signed_headers(raw: bytes, secret: str) -> dict[str, str]:
    return {"X-Hub-Signature-256": sign_body(raw, secret), "Content-Type": "application/json"}
