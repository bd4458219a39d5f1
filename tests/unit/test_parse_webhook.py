"""Webhook bodies -> inbound texts -> MessageReceived events (pure, no servers)."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import msgspec
import pytest

from app.devtools.webhook_bodies import delivery, encode, text_message
from app.ingress.parse_webhook import (
    MESSAGE_FIELDS,
    TIE_BREAK,
    MalformedWebhook,
    events_from_texts,
    parse_webhook,
)
from schema.events import MessageReceived, decode_body, encode_body
from schema.ids import NAMESPACE, identity_id_for, message_id_for, user_id_for
from tests.meta_fixtures import fixture_body, fixture_variants

SENDER = "919130099484"
RECEIVED_AT = 1_700_000_000_123

VARIANTS = fixture_variants()
VARIANT_IDS = [f"{file}:{variant}" for file, variant, _ in VARIANTS]


def _inbound_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object of ``entry[].changes[].value.messages``, read straight from the JSON."""
    found = []
    for entry in body.get("entry") or []:
        for change in entry.get("changes") or []:
            value = change.get("value") or {}
            found.extend(value.get("messages") or [])
    return found


def _inbound_texts(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in _inbound_messages(body) if m.get("type") == "text"]


def _status(wamid: str, status: str = "delivered") -> dict[str, Any]:
    return {
        "id": wamid,
        "status": status,
        "timestamp": "1700000001",
        "recipient_id": SENDER,
    }


def _change(messages: list[dict[str, Any]] | None = None,
            statuses: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"messaging_product": "whatsapp"}
    if messages is not None:
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return {"field": "messages", "value": value}


def _webhook(*entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A body with one entry per argument, each a list of changes."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": str(i), "changes": changes} for i, changes in enumerate(entries)],
    }


# --- every real fixture -------------------------------------------------------------------


@pytest.mark.parametrize(("file", "variant", "body"), VARIANTS, ids=VARIANT_IDS)
def test_every_fixture_variant_parses_to_exactly_its_inbound_text_messages(
    file: str, variant: str, body: dict[str, Any]
) -> None:
    parsed = parse_webhook(encode(body))

    expected = _inbound_texts(body)
    assert len(parsed.texts) == len(expected)
    assert [t.wamid for t in parsed.texts] == [m["id"] for m in expected]
    assert [t.text for t in parsed.texts] == [m["text"]["body"] for m in expected]
    assert not parsed.unknown_shape


@pytest.mark.parametrize(("file", "variant", "body"), VARIANTS, ids=VARIANT_IDS)
def test_every_fixture_variant_turns_into_one_event_per_text(
    file: str, variant: str, body: dict[str, Any]
) -> None:
    parsed = parse_webhook(encode(body))
    events = events_from_texts(parsed.texts, RECEIVED_AT)

    assert len(events) == len(_inbound_texts(body))
    assert all(e.content_type == "text" for e in events)


def test_the_fixtures_contain_both_texts_and_other_kinds() -> None:
    with_text = [v for v in VARIANTS if _inbound_texts(v[2])]
    without_text = [v for v in VARIANTS if not _inbound_texts(v[2])]
    assert with_text
    assert without_text


@pytest.mark.parametrize(
    ("file", "variant"),
    [
        ("message.json", "image"),
        ("message.json", "video"),
        ("message.json", "audio"),
        ("message.json", "static_sticker"),
        ("message.json", "reaction"),
        ("message.json", "current_location"),
        ("message.json", "contacts"),
        ("message.json", "unsupported"),
        ("message_status.json", "read"),
        ("message_status.json", "failed"),
        ("system.json", "identity_change"),
        ("outgoing_message.json", "text"),
        ("edited_message.json", "image"),
        ("deleted_message.json", "revoke"),
        ("callback_button.json", "quick_reply"),
        ("template_status_update.json", "approved"),
        ("account_update.json", "account_deleted"),
    ],
    ids=lambda v: v,
)
def test_only_text_messages_become_texts(file: str, variant: str) -> None:
    parsed = parse_webhook(encode(fixture_body(file, variant)))

    assert parsed.texts == []
    assert events_from_texts(parsed.texts, RECEIVED_AT) == []


def test_the_text_fixture_gives_its_sender_with_a_plus_and_its_body() -> None:
    parsed = parse_webhook(encode(fixture_body("message.json", "text")))

    assert len(parsed.texts) == 1
    text = parsed.texts[0]
    assert text.sender.phone == "+972987654321"
    assert text.sender.bsuid == "US.13491208655302741918"
    assert text.sender.parent_bsuid == "US.ENT.11815799212886844830"
    assert text.wamid == "wamid.xyzxyz"
    assert text.text == "Body Text"
    assert text.client_timestamp == 1697043223
    assert msgspec.json.decode(text.raw)["id"] == "wamid.xyzxyz"


def test_echoes_of_the_business_own_text_messages_are_not_inbound_texts() -> None:
    body = fixture_body("outgoing_message.json", "text")

    assert parse_webhook(encode(body)).texts == []


# --- structure of a delivery ----------------------------------------------------------------


def test_several_messages_in_one_delivery_keep_their_order() -> None:
    messages = [text_message(SENDER, f"message {i}", wamid=f"wamid.{i}") for i in range(5)]

    parsed = parse_webhook(encode(delivery(*messages)))

    assert [t.text for t in parsed.texts] == [f"message {i}" for i in range(5)]
    assert [t.wamid for t in parsed.texts] == [f"wamid.{i}" for i in range(5)]


def test_several_entries_and_several_changes_are_all_read_in_order() -> None:
    body = _webhook(
        [
            _change([text_message(SENDER, "e0 c0", wamid="wamid.a")]),
            _change([text_message(SENDER, "e0 c1", wamid="wamid.b")]),
        ],
        [
            _change([text_message("14155550100", "e1 c0", wamid="wamid.c"),
                     text_message("14155550100", "e1 c0 bis", wamid="wamid.d")]),
        ],
    )

    parsed = parse_webhook(encode(body))

    assert [t.text for t in parsed.texts] == ["e0 c0", "e0 c1", "e1 c0", "e1 c0 bis"]
    assert [t.sender.phone for t in parsed.texts] == ["+" + SENDER] * 2 + ["+14155550100"] * 2


def test_delivery_statuses_are_read_as_statuses() -> None:
    body = _webhook([_change(statuses=[_status("wamid.1"), _status("wamid.2", "read")])])

    parsed = parse_webhook(encode(body))

    assert parsed.texts == []
    assert [(s.outbound_message_id, s.status) for s in parsed.statuses] == [
        ("wamid.1", "delivered"), ("wamid.2", "read")]
    assert parsed.ignored == 0
    assert not parsed.unknown_shape


@pytest.mark.parametrize("kind", [{"a": 1}, ["read"], 7, None])
def test_a_status_whose_status_is_not_a_string_is_skipped_not_a_crash(kind: Any) -> None:
    odd = _status("wamid.odd")
    odd["status"] = kind
    body = _webhook([_change(statuses=[odd, _status("wamid.ok")])])

    parsed = parse_webhook(encode(body))

    assert [s.outbound_message_id for s in parsed.statuses] == ["wamid.ok"]


def test_non_text_messages_are_counted_as_ignored_beside_the_texts() -> None:
    image = {"from": SENDER, "id": "wamid.img", "timestamp": "1700000000", "type": "image",
             "image": {"id": "123", "mime_type": "image/jpeg"}}
    body = _webhook([
        _change([text_message(SENDER, "hello", wamid="wamid.t"), image],
                statuses=[_status("wamid.old")]),
    ])

    parsed = parse_webhook(encode(body))

    assert [t.wamid for t in parsed.texts] == ["wamid.t"]
    assert parsed.ignored == 1  # the image; the status is read as a status
    assert len(parsed.statuses) == 1


def test_a_change_without_a_value_is_counted_as_ignored() -> None:
    body = {"object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages"}]}]}

    parsed = parse_webhook(encode(body))

    assert parsed.texts == []
    assert parsed.ignored == 1


def test_a_timestamp_that_is_not_a_number_leaves_the_client_timestamp_empty() -> None:
    message = text_message(SENDER, "hi")
    message["timestamp"] = "yesterday"

    parsed = parse_webhook(encode(delivery(message)))

    assert len(parsed.texts) == 1
    assert parsed.texts[0].client_timestamp is None


def test_a_text_message_without_a_timestamp_is_kept() -> None:
    message = text_message(SENDER, "hi")
    del message["timestamp"]

    parsed = parse_webhook(encode(delivery(message)))

    assert [t.text for t in parsed.texts] == ["hi"]
    assert parsed.texts[0].client_timestamp is None


# --- malformed and unexpected bodies --------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"\xff" + random.Random(20240601).randbytes(256),
        b"\x00\x01\x02",
        b'{"object": "whatsapp_business_account", "entry": [',
        b'{"a": 1} trailing',
        b"\xef\xbb\xbf\xff\xfe",
    ],
    ids=["unclosed-object", "empty", "random-bytes", "control-bytes", "truncated",
         "trailing-garbage", "bad-utf8"],
)
def test_a_body_that_is_not_json_raises_malformed_webhook(body: bytes) -> None:
    with pytest.raises(MalformedWebhook):
        parse_webhook(body)


@pytest.mark.parametrize(
    "body",
    [b"{}", b"[]", b'"str"', b"42", b"null", b"true", b'{"object": "page"}',
     b'{"object": "page", "entry": [{"id": "1", "changes": []}]}',
     b'{"entry": "not a list"}', b'{"entry": [{"changes": [{"value": 5}]}]}'],
    ids=["empty-object", "empty-list", "string", "number", "null", "bool", "page-object",
         "page-with-entries", "entry-not-a-list", "value-not-an-object"],
)
def test_well_formed_json_of_an_unknown_shape_gives_no_texts_without_raising(
    body: bytes,
) -> None:
    parsed = parse_webhook(body)

    assert parsed.texts == []


@pytest.mark.parametrize("body", [b"{}", b"[]", b'"str"', b"42", b"null"],
                         ids=["empty-object", "empty-list", "string", "number", "null"])
def test_json_that_is_not_a_webhook_object_is_flagged_as_unknown_shape(body: bytes) -> None:
    assert parse_webhook(body).unknown_shape


def test_a_whatsapp_webhook_with_no_entries_is_not_an_unknown_shape() -> None:
    parsed = parse_webhook(b'{"object": "whatsapp_business_account", "entry": []}')

    assert not parsed.unknown_shape
    assert parsed.texts == []


# Each oddly shaped message object between two good ones: what becomes of it. "text" = read
# as a text (optional metadata never costs a message), "unreadable" = kept raw as an event.
ODD_MESSAGES: list[tuple[str, Any, str]] = [
    ("text-is-a-number", {"from": SENDER, "id": "wamid.odd", "type": "text", "text": 5},
     "unreadable"),
    ("body-is-a-number", {"from": SENDER, "id": "wamid.odd", "type": "text",
                          "text": {"body": 5}}, "unreadable"),
    ("text-without-body", {"from": SENDER, "id": "wamid.odd", "type": "text", "text": {}},
     "unreadable"),
    ("text-missing", {"from": SENDER, "id": "wamid.odd", "type": "text"}, "unreadable"),
    ("from-is-a-number", {"from": 919130099484, "id": "wamid.odd", "type": "text",
                          "text": {"body": "x"}}, "text"),
    ("id-is-a-number", {"from": SENDER, "id": 7, "type": "text", "text": {"body": "x"}},
     "text"),
    ("id-empty", {"from": SENDER, "id": "", "type": "text", "text": {"body": "x"}},
     "unreadable"),
    ("id-missing", {"from": SENDER, "type": "text", "text": {"body": "x"}}, "unreadable"),
    ("type-is-a-number", {"from": SENDER, "id": "wamid.odd", "type": 1,
                          "text": {"body": "x"}}, "ignored"),
    ("type-missing-with-a-text", {"from": SENDER, "id": "wamid.odd", "text": {"body": "x"}},
     "text"),
    ("timestamp-is-a-number", {"from": SENDER, "id": "wamid.odd", "type": "text",
                               "timestamp": 1700000000, "text": {"body": "x"}}, "text"),
    ("timestamp-is-a-float", {"from": SENDER, "id": "wamid.odd", "type": "text",
                              "timestamp": 1700000000.5, "text": {"body": "x"}}, "text"),
    ("timestamp-is-an-object", {"from": SENDER, "id": "wamid.odd", "type": "text",
                                "timestamp": {"s": 1}, "text": {"body": "x"}}, "text"),
    ("extra-keys", {"from": SENDER, "id": "wamid.odd", "type": "text", "text": {"body": "x"},
                    "from_logical_id": "95000398405635", "new_field": [1, {"a": None}]}, "text"),
    ("from-not-a-phone", {"from": "not a phone", "id": "wamid.odd", "type": "text",
                          "text": {"body": "x"}}, "unreadable"),
    ("from-empty", {"from": "", "id": "wamid.odd", "type": "text", "text": {"body": "x"}},
     "unreadable"),
    ("from-empty-with-a-bsuid", {"from": "", "from_user_id": "US.13491208655302741918",
                                 "id": "wamid.odd", "type": "text", "text": {"body": "x"}},
     "text"),
    ("bsuid-only", {"from_user_id": "US.13491208655302741918", "id": "wamid.odd",
                    "type": "text", "text": {"body": "x"}}, "text"),
    ("bsuid-is-a-number", {"from_user_id": 13491208655302741918, "id": "wamid.odd",
                           "type": "text", "text": {"body": "x"}}, "unreadable"),
    ("image-named-only-by-the-contacts", {"id": "wamid.odd", "type": "image",
                                          "image": {"id": "1"}}, "ignored"),
    ("text-named-only-by-the-contacts", {"id": "wamid.odd", "type": "text",
                                         "text": {"body": "x"}}, "text"),
    ("message-is-a-string", "a string instead of a message", "unreadable"),
    ("message-is-a-number", 42, "unreadable"),
    ("message-is-null", None, "unreadable"),
    ("message-is-a-list", [], "unreadable"),
]


@pytest.mark.parametrize(("odd", "outcome"), [(m, o) for _, m, o in ODD_MESSAGES],
                         ids=[name for name, _, _ in ODD_MESSAGES])
def test_an_oddly_shaped_message_is_read_or_kept_raw_beside_its_valid_siblings(
    odd: Any, outcome: str,
) -> None:
    good_before = text_message(SENDER, "before", wamid="wamid.before")
    good_after = text_message(SENDER, "after", wamid="wamid.after")
    body = delivery(good_before, good_after)
    body["entry"][0]["changes"][0]["value"]["messages"].insert(1, odd)

    parsed = parse_webhook(encode(body))

    kept = ["wamid.before", "wamid.odd", "wamid.after"] if outcome == "text" \
        else ["wamid.before", "wamid.after"]
    assert [t.wamid if t.wamid != "7" else "wamid.odd" for t in parsed.texts] == kept
    assert len(parsed.unreadable) == (1 if outcome == "unreadable" else 0)
    assert parsed.ignored == (1 if outcome == "ignored" else 0)
    if outcome == "unreadable":
        assert json.loads(parsed.unreadable[0].raw_message) == odd


def test_a_huge_top_level_string_is_an_unknown_shape() -> None:
    body = json.dumps("x" * 5_000_000).encode()

    parsed = parse_webhook(body)

    assert parsed.unknown_shape
    assert parsed.texts == []


def test_a_huge_string_in_an_unknown_field_gives_no_texts() -> None:
    body = json.dumps({"object": "y" * 5_000_000, "padding": "z" * 1_000_000}).encode()

    parsed = parse_webhook(body)

    assert parsed.texts == []


def test_a_huge_text_body_is_kept_whole() -> None:
    huge = "é" * 1_000_000
    parsed = parse_webhook(encode(delivery(text_message(SENDER, huge))))

    assert len(parsed.texts) == 1
    assert parsed.texts[0].text == huge


def test_an_unterminated_huge_string_raises_malformed_webhook() -> None:
    with pytest.raises(MalformedWebhook):
        parse_webhook(b'"' + b"x" * 5_000_000)


# --- events_from_texts ----------------------------------------------------------------------


def _texts(*bodies: str, sender: str = SENDER) -> list[Any]:
    messages = [text_message(sender, b, wamid=f"wamid.{i}") for i, b in enumerate(bodies)]
    return parse_webhook(encode(delivery(*messages))).texts


def test_tracking_scores_strictly_increase_within_a_delivery() -> None:
    events = events_from_texts(_texts(*[f"m{i}" for i in range(50)]), RECEIVED_AT)

    scores = [e.tracking_score for e in events]
    assert all(a < b for a, b in zip(scores, scores[1:], strict=False))
    assert scores[0] == RECEIVED_AT
    assert scores[-1] == RECEIVED_AT + 49 * TIE_BREAK


def test_tracking_scores_stay_within_the_millisecond_of_receipt() -> None:
    events = events_from_texts(_texts(*[f"m{i}" for i in range(1024)]), RECEIVED_AT)

    assert all(RECEIVED_AT <= e.tracking_score < RECEIVED_AT + 1 for e in events)
    assert len({e.tracking_score for e in events}) == 1024


def test_received_at_and_occurred_at_are_the_given_milliseconds() -> None:
    events = events_from_texts(_texts("a", "b"), RECEIVED_AT)

    assert [e.received_at for e in events] == [RECEIVED_AT, RECEIVED_AT]
    assert [e.occurred_at for e in events] == [RECEIVED_AT, RECEIVED_AT]


def test_the_same_input_twice_gives_the_same_ids() -> None:
    first = events_from_texts(_texts("a", "b"), RECEIVED_AT)
    second = events_from_texts(_texts("a", "b"), RECEIVED_AT + 5_000)

    def ids(events: list[Any]) -> list[tuple[str, str, str, str]]:
        return [(e.event_id, e.message_id, e.identity_id, e.user_id) for e in events]

    assert ids(first) == ids(second)


def test_the_ids_are_derived_from_the_sender_and_the_wamid() -> None:
    (event,) = events_from_texts(_texts("hello"), RECEIVED_AT)

    identity = identity_id_for("whatsapp", "+" + SENDER)
    assert event.identity_id == identity
    assert event.user_id == user_id_for(identity)
    assert event.message_id == message_id_for(identity, "wamid.0")
    assert event.source_message_id == "wamid.0"
    for value in (event.event_id, event.message_id, event.identity_id, event.user_id):
        assert str(uuid.UUID(value)) == value


def test_distinct_messages_get_distinct_event_and_message_ids() -> None:
    events = events_from_texts(_texts(*[f"m{i}" for i in range(20)]), RECEIVED_AT)

    assert len({e.event_id for e in events}) == 20
    assert len({e.message_id for e in events}) == 20
    assert len({e.user_id for e in events}) == 1


def test_the_channel_user_key_is_e164_with_a_plus() -> None:
    (from_digits,) = events_from_texts(_texts("x", sender="919130099484"), RECEIVED_AT)
    (from_plus,) = events_from_texts(_texts("x", sender="+919130099484"), RECEIVED_AT)

    assert from_digits.channel_user_key == "+919130099484"
    assert from_plus.channel_user_key == "+919130099484"
    assert from_digits.identity_id == from_plus.identity_id
    assert from_digits.channel == "whatsapp"


def test_the_event_carries_the_text_and_the_raw_message() -> None:
    message = text_message(SENDER, "hello there", wamid="wamid.raw", ts=1_700_000_042)
    texts = parse_webhook(encode(delivery(message))).texts

    (event,) = events_from_texts(texts, RECEIVED_AT)

    assert event.text == "hello there"
    assert event.content_type == "text"
    assert event.client_timestamp == 1_700_000_042
    assert isinstance(event.raw_payload, msgspec.Raw)
    assert msgspec.json.decode(event.raw_payload) == message


def test_the_raw_message_is_the_json_as_received_and_logs_as_the_same_object() -> None:
    message_json = b'{ "from" : "919130099484", "id": "wamid.spaced", "type": "text",\n' \
                   b' "text": {"body": "caf\\u00e9"}, "timestamp": "1700000042" }'
    body = (b'{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{'
            b'"messages":[' + message_json + b']}}]}]}')

    (text,) = parse_webhook(body).texts
    (event,) = events_from_texts([text], RECEIVED_AT)

    assert bytes(text.raw) == message_json  # not encoded again: sealed as it came
    logged = decode_body(encode_body(event))
    assert isinstance(logged, MessageReceived)
    assert logged.raw_payload == json.loads(message_json)


def test_no_texts_give_noevents_from_texts() -> None:
    assert events_from_texts([], RECEIVED_AT) == []


def test_json_nested_ten_thousand_deep_is_malformed_not_a_crash() -> None:
    with pytest.raises(MalformedWebhook):
        parse_webhook(b"[" * 10_000 + b"]" * 10_000)


def test_the_fields_events_are_built_with_by_position_are_the_schemas_in_order() -> None:
    # events_from_texts passes MessageReceived's fields by position; a field added or moved
    # in the schema must fail here, not put a value in the wrong field of the log.
    fields = MessageReceived.__struct_fields__
    assert fields[:len(MESSAGE_FIELDS)] == MESSAGE_FIELDS
    assert fields[len(MESSAGE_FIELDS):] == ("recovered_from",)


def test_an_event_built_from_a_text_holds_each_value_in_its_named_field() -> None:
    body = encode(delivery(text_message("+15550001111", "hello there", "wamid.A", 1_700_000_001),
                           names={"+15550001111": "Ann"}))
    (text,) = parse_webhook(body).texts
    (event,) = events_from_texts([text], RECEIVED_AT)

    identity_id = identity_id_for("whatsapp", "+15550001111")
    message_id = message_id_for(identity_id, "wamid.A")
    assert msgspec.structs.asdict(event) == {
        "event_id": str(uuid.uuid5(NAMESPACE, f"event:MessageReceived:{message_id}")),
        "occurred_at": RECEIVED_AT, "user_id": user_id_for(identity_id),
        "identity_id": identity_id, "message_id": message_id, "channel": "whatsapp",
        "channel_user_key": "+15550001111", "source_message_id": "wamid.A",
        "content_type": "text", "text": "hello there", "client_timestamp": 1_700_000_001,
        "received_at": RECEIVED_AT, "tracking_score": float(RECEIVED_AT),
        "raw_payload": text.raw, "phone": "+15550001111", "bsuid": None,
        "parent_bsuid": None, "username": text.sender.username, "recovered_from": None,
    }


def test_a_contact_that_is_not_an_object_is_skipped_beside_the_senders() -> None:
    body = delivery(text_message("+15550001111", "hi", "wamid.B", 1_700_000_001),
                    usernames={"+15550001111": "ann"})
    value = body["entry"][0]["changes"][0]["value"]
    value["contacts"] = [1, "x", *value["contacts"]]
    (text,) = parse_webhook(encode(body)).texts
    assert text.sender.phone == "+15550001111"
    assert text.sender.username == "ann"
