"""Real webhook bodies from other projects and Meta's documented 2026 shapes: per payload,
what Meta's documentation says should happen (pure parsing, no servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.ingress.parse_webhook import events_from_texts, parse_webhook

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
BSUID = "US.13491208655302741918"
PARENT = "US.ENT.11815799212886844830"

# (folder/file, variant) -> texts as (wamid, phone, bsuid), unreadable count,
# statuses as (outbound id, status, recipient bsuid, error code), ignored count.
EXPECTED: list[tuple[str, str, list[tuple[str, str | None, str | None]], int,
                     list[tuple[str, str, str | None, int | None]], int]] = [
    ("meta-webhooks-bsuid-docs/bsuid.json", "text_username_user_no_phone",
     [("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA=", None, BSUID)], 0, [], 0),
    ("meta-webhooks-bsuid-docs/bsuid.json", "text_phone_and_bsuid",
     [("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMQA=", "+16505551234", BSUID)],
     0, [], 0),
    ("meta-webhooks-bsuid-docs/bsuid.json", "text_empty_from_with_bsuid",
     [("wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMgA=", None, BSUID)], 0, [], 0),
    ("meta-webhooks-bsuid-docs/bsuid.json", "status_delivered_to_bsuid", [], 0,
     [("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3OEQ5QTFGMDQ5QUVGRkJBNjEA", "delivered", BSUID, None)],
     0),
    ("meta-webhooks-bsuid-docs/bsuid.json", "status_failed_to_bsuid", [], 0,
     [("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3OEQ5QTFGMDQ5QUVGRkJBNjIA", "failed", BSUID, 131047)],
     0),
    ("meta-webhooks-kapso/normalize_webhook.json", "mixed_kinds", [], 0,
     [("wamid.order", "sent", None, None)], 3),
    ("meta-webhooks-kapso/normalize_webhook.json", "every_field", [], 1,
     [("wamid.msg", "delivered", None, None)], 0),
    ("meta-webhooks-pywa/message.json", "text",
     [("wamid.xyzxyz", "+972987654321", BSUID)], 0, [], 0),
    ("meta-webhooks-pywa/message.json", "forwarded",
     [("wamid.xyzxyz", "+972987654321", BSUID)], 0, [], 0),
    ("meta-webhooks-pywa/message.json", "unsupported", [], 0, [], 1),
    ("meta-webhooks-pywa/message_status.json", "failed", [], 0,
     [("wamid.xyzxyz", "failed", None, 130472)], 0),
    ("meta-webhooks-pywa/message_status.json", "played", [], 0, [], 1),
]


def _body(path: str, variant: str) -> bytes:
    return json.dumps(json.loads((FIXTURES / path).read_text())[variant]).encode()


@pytest.mark.parametrize(("path", "variant", "texts", "unreadable", "statuses", "ignored"),
                         EXPECTED, ids=[f"{p}:{v}" for p, v, *_ in EXPECTED])
def test_each_real_payload_gives_what_meta_documents(
    path: str, variant: str, texts: list[tuple[str, str | None, str | None]], unreadable: int,
    statuses: list[tuple[str, str, str | None, int | None]], ignored: int,
) -> None:
    parsed = parse_webhook(_body(path, variant))

    assert [(t.wamid, t.sender.phone, t.sender.bsuid) for t in parsed.texts] == texts
    assert len(parsed.unreadable) == unreadable
    assert [(s.outbound_message_id, s.status, s.recipient_bsuid, s.error_code)
            for s in parsed.statuses] == statuses
    assert parsed.ignored == ignored
    assert not parsed.unknown_shape


def test_a_username_user_carries_username_and_parent_bsuid_into_its_event() -> None:
    parsed = parse_webhook(_body("meta-webhooks-bsuid-docs/bsuid.json",
                                 "text_username_user_no_phone"))

    [event] = events_from_texts(parsed.texts, 1_750_090_702_000)

    assert (event.phone, event.bsuid, event.channel_user_key) == (None, BSUID, BSUID)
    assert (event.username, event.parent_bsuid) == ("sheena.nelson", PARENT)
    assert (event.sender_phone, event.sender_bsuid) == (None, BSUID)


def test_a_numeric_timestamp_is_read_as_meta_seconds() -> None:
    parsed = parse_webhook(_body("meta-webhooks-bsuid-docs/bsuid.json",
                                 "text_empty_from_with_bsuid"))

    assert parsed.texts[0].client_timestamp == 1_750_090_704
