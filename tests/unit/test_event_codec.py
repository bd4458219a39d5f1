"""Events <-> stream entry fields (encode_event / decode_event) and entry ids <-> positions."""

from __future__ import annotations

import pytest

from app.platform.eventlog.entries import (
    ENTRY_FIELDS,
    ENTRY_LUA,
    UndecodableEvent,
    as_text,
    decode_event,
    encode_event,
    entry_id_of,
    entry_position,
    entry_values,
    fields_of,
    reply_entries,
    standard_body,
)
from schema.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    DeliveryStatusReceived,
    MessageReceived,
    MessageUnreadable,
    ReplyFailed,
    ReplySent,
    SummaryCreated,
    SummaryRequested,
    UserForgotten,
    UserKeyIssued,
    decode_body,
    encode_body,
    event_type_name,
)

AT = 1_700_000_000_123

EVENTS = [
    MessageReceived(
        event_id="e-1", occurred_at=AT, user_id="u-1", identity_id="i-1", message_id="m-1",
        channel="whatsapp", channel_user_key="+919130099484", source_message_id="wamid.1",
        content_type="text", text="héllo 👋", client_timestamp=1_700_000_000,
        received_at=AT, tracking_score=AT + 3 / 1024,
        raw_payload={"from": "919130099484", "nested": {"list": [1, 2.5, None, True]}},
    ),
    ReplySent(
        event_id="e-2", occurred_at=AT + 1, message_id="m-1", user_id="u-1",
        reply_text="Hi!", replied_at=AT + 1, contextual=True,
        outbound_message_id="wamid.out", model="llama", fallback_used=False, dry_run=True,
    ),
    ReplyFailed(
        event_id="e-3", occurred_at=AT + 2, message_id="m-1", user_id="u-1", attempts=3,
        error="timeout", retryable=True,
    ),
    SummaryRequested(event_id="e-4", occurred_at=AT + 3, user_id="u-1"),
    SummaryCreated(
        event_id="e-5", occurred_at=AT + 4, summary_id="s-1", user_id="u-1",
        range_start=AT - 7 * 86_400_000, range_end=AT, status="ok", summary_text="All good.",
        model_name="llama", prompt_version="v1", input_messages_count=12,
        input_hash="abc123", error=None,
    ),
    MessageReceived(
        event_id="e-6", occurred_at=AT, user_id="u-2", identity_id="i-2", message_id="m-2",
        channel="whatsapp", channel_user_key="US.13491208655302741918",
        source_message_id="wamid.2", content_type="text", text="hi", client_timestamp=None,
        received_at=AT, tracking_score=float(AT), phone=None, bsuid="US.13491208655302741918",
        parent_bsuid="US.ENT.11815799212886844830", username="jane", recovered_from="e-7",
    ),
    MessageUnreadable(
        event_id="e-7", occurred_at=AT, reason="no usable sender",
        raw_message='{"id":"wamid.3","type":"text"}', raw_contacts=None, received_at=AT,
    ),
    DeliveryStatusReceived(
        event_id="e-8", occurred_at=AT, outbound_message_id="wamid.out", status="failed",
        status_at=1_700_000_000, recipient="US.13491208655302741918",
        recipient_bsuid="US.13491208655302741918", error_code=131047,
        error_title="Re-engagement message", received_at=AT,
    ),
    UserKeyIssued(event_id="e-9", occurred_at=AT, user_id="u-1", key_id="k-1",
                  wrapped_key="abc:def"),
    UserForgotten(event_id="e-10", occurred_at=AT, user_id="u-1", key_ids=["k-1"],
                  forgotten_at=AT),
]
EVENT_IDS = [type(e).__name__ for e in EVENTS]


def _fields(event: object = EVENTS[0]) -> dict[bytes, bytes]:
    return encode_event(event)  # type: ignore[arg-type]


def test_the_examples_cover_every_event_type() -> None:
    assert {type(e) for e in EVENTS} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_every_event_type_round_trips_through_the_stream_fields(event: object) -> None:
    decoded = decode_event(encode_event(event))  # type: ignore[arg-type]

    assert decoded == event
    assert type(decoded) is type(event)


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_the_stream_fields_carry_type_version_id_time_and_body(event: object) -> None:
    fields = encode_event(event)  # type: ignore[arg-type]

    assert set(fields) == {b"type", b"v", b"id", b"at", b"body"}
    assert fields[b"type"] == type(event).__name__.encode()
    assert fields[b"v"] == str(SCHEMA_VERSION).encode()
    assert fields[b"id"] == event.event_id.encode()  # type: ignore[attr-defined]
    assert fields[b"at"] == str(event.occurred_at).encode()  # type: ignore[attr-defined]
    assert fields[b"body"] == encode_body(event)  # type: ignore[arg-type]


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_the_values_handed_to_lua_are_the_fields_in_entry_field_order(event: object) -> None:
    fields = encode_event(event)  # type: ignore[arg-type]

    assert entry_values(event) == [fields[name] for name in ENTRY_FIELDS]  # type: ignore[arg-type]


def test_the_lua_append_writes_every_entry_field_in_order() -> None:
    assert "'type', event[1], 'v', event[2], 'id', event[3], 'at', event[4], " \
        "'body', event[5]" in ENTRY_LUA


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_an_archived_body_decodes_back_to_its_event(event: object) -> None:
    assert decode_body(encode_body(event)) == event  # type: ignore[arg-type]


@pytest.mark.parametrize("event", EVENTS, ids=EVENT_IDS)
def test_the_type_name_is_the_tag(event: object) -> None:
    assert event_type_name(event) == type(event).__name__  # type: ignore[arg-type]


def test_a_summary_request_defaults_to_the_last_seven_days() -> None:
    assert SummaryRequested(event_id="e", occurred_at=AT, user_id="u").range == "last_7_days"


def test_unknown_fields_in_a_body_are_ignored() -> None:
    fields = _fields(EVENTS[3])
    fields[b"body"] = fields[b"body"][:-1] + b',"added_later":1}'

    assert decode_event(fields) == EVENTS[3]


@pytest.mark.parametrize("version", [b"2", b"0", b"-1", b"999"])
def test_an_unknown_schema_version_is_undecodable(version: bytes) -> None:
    fields = _fields()
    fields[b"v"] = version

    with pytest.raises(UndecodableEvent, match="schema version"):
        decode_event(fields)


def test_a_missing_schema_version_is_undecodable() -> None:
    fields = _fields()
    del fields[b"v"]

    with pytest.raises(UndecodableEvent):
        decode_event(fields)


@pytest.mark.parametrize("version", [b"one", b"", b"1.0", b"v1"])
def test_a_non_numeric_schema_version_is_undecodable(version: bytes) -> None:
    fields = _fields()
    fields[b"v"] = version

    with pytest.raises(UndecodableEvent, match="not a number"):
        decode_event(fields)


def test_a_missing_body_is_undecodable() -> None:
    fields = _fields()
    del fields[b"body"]

    with pytest.raises(UndecodableEvent, match="no body"):
        decode_event(fields)


def test_an_unknown_type_tag_in_the_body_is_undecodable() -> None:
    fields = _fields(EVENTS[3])
    fields[b"body"] = fields[b"body"].replace(b'"SummaryRequested"', b'"SomethingNew"')

    with pytest.raises(UndecodableEvent):
        decode_event(fields)


def test_a_body_without_a_type_tag_is_undecodable() -> None:
    fields = _fields()
    fields[b"body"] = b'{"event_id": "e", "occurred_at": 1}'

    with pytest.raises(UndecodableEvent):
        decode_event(fields)


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe\x00", b"[]", b"null", b'{"type": "ReplyFailed"}',
     b'{"type": "SummaryRequested", "event_id": 5, "occurred_at": 1, "user_id": "u"}'],
    ids=["empty", "text", "bytes", "list", "null", "missing-fields", "wrong-field-type"],
)
def test_a_garbage_body_is_undecodable(body: bytes) -> None:
    fields = _fields()
    fields[b"body"] = body

    with pytest.raises(UndecodableEvent, match="does not decode"):
        decode_event(fields)


@pytest.mark.parametrize(
    ("entry_id", "position"),
    [("1700000000000-3", (1_700_000_000_000, 3)), ("1700000000000-0", (1_700_000_000_000, 0)),
     ("1700000000000", (1_700_000_000_000, 0)), ("0-1", (0, 1))],
)
def test_entry_position_splits_a_stream_id_into_milliseconds_and_sequence(
    entry_id: str, position: tuple[int, int]
) -> None:
    assert entry_position(entry_id) == position


def test_entry_positions_compare_in_stream_order() -> None:
    ids = ["1700000000000-10", "1700000000000-9", "1700000000001-0", "999999999999-5"]

    assert sorted(ids, key=entry_position) == [
        "999999999999-5", "1700000000000-9", "1700000000000-10", "1700000000001-0",
    ]


@pytest.mark.parametrize("entry_id", ["1700000000000-3", "0-0", "1-18446744073709551615"])
def test_a_position_turns_back_into_its_entry_id(entry_id: str) -> None:
    assert entry_id_of(entry_position(entry_id)) == entry_id


@pytest.mark.parametrize(("reply", "text"), [(b"1-0", "1-0"), ("1-0", "1-0"), (b"", ""),
                                             ("h\u00e9".encode(), "h\u00e9"), (None, None)])
def test_a_redis_reply_reads_as_text_whether_bytes_or_str(reply: bytes | str | None,
                                                         text: str | None) -> None:
    assert as_text(reply) == text


def test_a_message_of_before_bsuids_is_answered_at_its_phone() -> None:
    message = EVENTS[0]
    assert isinstance(message, MessageReceived)
    assert (message.sender_phone, message.sender_bsuid) == ("+919130099484", None)


def test_a_username_user_is_answered_at_the_bsuid() -> None:
    message = EVENTS[5]
    assert isinstance(message, MessageReceived)
    assert (message.sender_phone, message.sender_bsuid) == (None, "US.13491208655302741918")


# -- entries as an unparsed XREADGROUP reply holds them ------------------------------------


def _pairs(fields: dict[bytes, bytes]) -> list[bytes]:
    return [item for pair in fields.items() for item in pair]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_an_entry_as_the_append_script_writes_it_gives_its_body_at_once(event: object) -> None:
    fields = encode_event(event)  # type: ignore[arg-type]
    assert standard_body(_pairs(fields)) == fields[b"body"]
    assert fields_of(_pairs(fields)) == fields


@pytest.mark.parametrize("change", [
    lambda f: {**f, b"v": b"99"},  # another schema version
    lambda f: {**f, b"v": b"01"},  # the same version spelled otherwise
    lambda f: dict(reversed(f.items())),  # another order
    lambda f: {**f, b"only_group": b"replier", b"retry_of": b"1-1"},  # an operator retry
    lambda f: {k: v for k, v in f.items() if k != b"at"},  # a field missing
    lambda f: {(b"kind" if k == b"type" else k): v for k, v in f.items()},  # renamed
])
def test_any_other_entry_goes_the_general_way(change: object) -> None:
    fields = change(encode_event(EVENTS[0]))  # type: ignore[operator]
    assert standard_body(_pairs(fields)) is None


def test_a_trimmed_entry_has_no_fields() -> None:
    assert fields_of(None) is None


def test_reply_entries_reads_resp3_and_resp2_replies_in_order() -> None:
    entries = [[b"1-1", [b"type", b"A"]], [b"1-2", [b"type", b"B"]]]
    later = [[b"1-3", [b"type", b"C"]]]
    assert reply_entries({b"s": entries}) == entries
    assert reply_entries([[b"s", entries]]) == entries
    assert reply_entries({b"s": entries, b"t": later}) == entries + later
    assert reply_entries(None) == reply_entries({}) == reply_entries([]) == []
