"""The pure parts of the test doubles: script items, Meta's Graph wire format, webhook bodies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.devtools.graph_wire import (
    accepted_answer,
    default_error_code,
    error_body,
    refuse_request,
    refuse_send,
)
from app.devtools.webhook_bodies import (
    delivery,
    encode,
    hub_signature,
    signed_headers,
    text_message,
    username_text_message,
)
from app.ingress.parse_webhook import parse_webhook
from app.ingress.signature import signature_is_valid
from tests.fakes.http_fake import Scripted, parse_script_item

ROOT = Path(__file__).resolve().parents[2]
TEXT_SEND = {"messaging_product": "whatsapp", "to": "+15550001", "text": {"body": "hi"}}


def test_script_items_are_validated() -> None:
    assert parse_script_item(429) == Scripted(status=429)
    assert parse_script_item(["error", 400, 131047]) == Scripted(status=400, code=131047)
    assert parse_script_item({"status": 500, "code": 2}) == Scripted(status=500, code=2)
    assert parse_script_item("malformed").malformed is True
    for bad in (99, True, "nope", ("error", 400), {"stauts": 500}):
        with pytest.raises(ValueError):
            parse_script_item(bad)


@pytest.mark.parametrize(("status", "code"), [(400, 100), (401, 190), (429, 130429),
                                              (500, 1), (503, 2), (502, 1), (418, 100)])
def test_each_http_status_carries_meta_s_usual_error_code(status: int, code: int) -> None:
    assert default_error_code(status) == code


def test_meta_error_object_names_its_code_and_defaults_its_details() -> None:
    error = error_body(131047)["error"]
    assert error["message"] == "(#131047) Re-engagement message"
    assert "24 hours" in error["error_data"]["details"]
    assert error_body(190)["error"]["error_subcode"] == 463


def test_an_accepted_send_names_the_recipient_digits_and_the_wamid() -> None:
    answer = accepted_answer({"to": "+1 555-0001"}, "wamid.X")
    assert answer.status == 200
    assert json.loads(answer.body)["contacts"] == [{"input": "+1 555-0001", "wa_id": "15550001"}]
    assert json.loads(answer.body)["messages"] == [{"id": "wamid.X"}]


def test_an_accepted_send_by_bsuid_names_the_user_id_and_no_wa_id() -> None:
    answer = accepted_answer({"recipient": "US.13491208655302741918"}, "wamid.Y")
    assert json.loads(answer.body)["contacts"] == [
        {"input": "US.13491208655302741918", "user_id": "US.13491208655302741918"}]


@pytest.mark.parametrize(("body", "refused"), [
    (TEXT_SEND, False),
    ({**TEXT_SEND, "type": "image", "text": None}, False),
    ({**TEXT_SEND, "messaging_product": "sms"}, True),
    ({**TEXT_SEND, "to": " "}, True),
    ({k: v for k, v in TEXT_SEND.items() if k != "to"}, True),
    ({**{k: v for k, v in TEXT_SEND.items() if k != "to"}, "recipient": "US.1"}, False),
    ({**TEXT_SEND, "text": {"body": ""}}, True),
    (["not", "an", "object"], True),
])
def test_meta_refuses_sends_without_product_recipient_or_text(body: object,
                                                               refused: bool) -> None:
    assert (refuse_send(body) is not None) is refused


def test_only_a_post_to_the_messages_path_is_a_send() -> None:
    assert refuse_request("POST", "/v21.0/123/messages") is None
    wrong_method = refuse_request("GET", "/v21.0/123/messages")
    assert wrong_method is not None and json.loads(wrong_method.body)["error"]["code"] == 100
    wrong_path = refuse_request("POST", "/v21.0/123/media")
    assert wrong_path is not None and json.loads(wrong_path.body)["error"]["code"] == 2500


def test_a_signed_delivery_passes_the_ingress_signature_check_and_parses_in_order() -> None:
    raw = encode(delivery(text_message("15550001", "one", wamid="wamid.1"),
                          text_message("15550002", "two 🙏", wamid="wamid.2"),
                          names={"15550001": "Asha"}))
    headers = signed_headers(raw, "secret")
    assert signature_is_valid(raw, headers["X-Hub-Signature-256"], "secret")
    assert not signature_is_valid(raw, hub_signature(raw, "other"), "secret")
    parsed = parse_webhook(raw)
    assert [(t.sender.phone, t.wamid, t.text) for t in parsed.texts] == [
        ("+15550001", "wamid.1", "one"), ("+15550002", "wamid.2", "two 🙏")]
    contacts = json.loads(raw)["entry"][0]["changes"][0]["value"]["contacts"]
    assert [c["profile"]["name"] for c in contacts] == ["Asha", "Test"]


def test_a_username_user_s_body_has_the_bsuid_shape_meta_documents_and_no_phone() -> None:
    bsuid = "US.13491208655302741918"
    wamid = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
    body = delivery(username_text_message(bsuid, "Does it come in another color?", wamid,
                                          1750090702),
                    names={bsuid: "Sheena Nelson"}, usernames={bsuid: "sheena.nelson"},
                    phone_number_id="106540352242922", display_phone_number="15550783881",
                    business_account_id="102290129340398")
    documented = json.loads((ROOT / "tests/fixtures/meta-webhooks-bsuid-docs/bsuid.json")
                            .read_text())["text_username_user_no_phone"]
    del documented["entry"][0]["changes"][0]["value"]["contacts"][0]["parent_user_id"]
    assert body == documented
    [text] = parse_webhook(encode(body)).texts
    assert (text.sender.phone, text.sender.bsuid, text.sender.username, text.wamid) == (
        None, bsuid, "sheena.nelson", wamid)


def test_a_delivery_gives_phone_and_username_users_each_their_own_contact() -> None:
    body = delivery(text_message("15550001", "one"),
                    username_text_message("US.1", "two"), names={"US.1": "Ben"})
    value = body["entry"][0]["changes"][0]["value"]
    assert value["contacts"] == [{"profile": {"name": "Test"}, "wa_id": "15550001"},
                                 {"profile": {"name": "Ben"}, "user_id": "US.1"}]
    assert ["from" in m for m in value["messages"]] == [True, False]
    senders = [(t.sender.phone, t.sender.bsuid) for t in parse_webhook(encode(body)).texts]
    assert senders == [("+15550001", None), (None, "US.1")]
