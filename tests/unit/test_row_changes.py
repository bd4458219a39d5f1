"""Events -> the row changes the projector writes (no database involved)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from app.platform.eventlog.content_crypto import ERASED, new_data_key, seal_event
from projections.row_changes import RowChanges, columns, ms_to_datetime
from schema.events import (
    SCHEMA_VERSION,
    DeliveryStatusReceived,
    MessageReceived,
    MessageUnreadable,
    ReplyFailed,
    ReplySent,
    SummaryCreated,
    SummaryRequested,
    encode_body,
)
from schema.ids import identity_id_for

AT = 1_700_000_000_123
AT_DT = datetime(2023, 11, 14, 22, 13, 20, 123_000, tzinfo=UTC)
AT_US = AT * 1_000  # AT as a row time (microseconds since the epoch)
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _as_datetime(row_time: int) -> datetime:
    return UNIX_EPOCH + timedelta(microseconds=row_time)


def _received(n: int = 1, *, user: str = "u-1", identity: str = "i-1",
              client_timestamp: int | None = 1_700_000_000,
              raw: dict[str, object] | None = None) -> MessageReceived:
    return MessageReceived(
        event_id=f"e-m{n}", occurred_at=AT, user_id=user, identity_id=identity,
        message_id=f"m-{n}", channel="whatsapp", channel_user_key="+919130099484",
        source_message_id=f"wamid.{n}", content_type="text", text=f"text {n}",
        client_timestamp=client_timestamp, received_at=AT, tracking_score=float(AT),
        raw_payload=raw if raw is not None else {"id": f"wamid.{n}"},
    )


def _reply(message: str = "m-1", text: str = "reply", at: int = AT + 500) -> ReplySent:
    return ReplySent(
        event_id=f"e-r-{message}-{at}", occurred_at=at, message_id=message, user_id="u-1",
        reply_text=text, replied_at=at, contextual=False, outbound_message_id="wamid.out",
        model="m", fallback_used=False,
    )


def _summary(summary_id: str = "s-1", text: str = "summary") -> SummaryCreated:
    return SummaryCreated(
        event_id=f"e-{summary_id}", occurred_at=AT, summary_id=summary_id, user_id="u-1",
        range_start=AT - 1_000, range_end=AT, status="ok", summary_text=text,
        model_name="llama", prompt_version="v1", input_messages_count=4, input_hash="h",
        error=None,
    )


def test_ms_to_datetime_is_utc_with_milliseconds() -> None:
    assert ms_to_datetime(AT) == AT_DT


def test_a_message_received_gives_one_user_one_identity_and_one_message_row() -> None:
    changes = RowChanges()
    changes.add(0, "1700000000000-0", _received(raw={"id": "wamid.1", "x": [1]}))

    assert changes.users == {"u-1": AT_US}
    assert changes.identities == {
        "i-1": ("u-1", "whatsapp", "+919130099484", AT_US, "phone", None, None)}
    assert list(changes.messages) == ["m-1"]
    user, identity, received, client, content_type, text, raw, wamid = changes.messages["m-1"]
    assert (user, identity, received) == ("u-1", "i-1", AT_US)
    assert _as_datetime(received) == AT_DT
    assert _as_datetime(client) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert (content_type, text, wamid) == ("text", "text 1", "wamid.1")
    assert json.loads(raw) == {"id": "wamid.1", "x": [1]}
    assert changes.replies == {}
    assert changes.summaries == {}


def test_a_message_without_client_timestamp_or_raw_payload_leaves_them_empty() -> None:
    event = MessageReceived(
        event_id="e", occurred_at=AT, user_id="u", identity_id="i", message_id="m",
        channel="whatsapp", channel_user_key="+1555000111", source_message_id="w",
        content_type="text", text="t", client_timestamp=None, received_at=AT,
        tracking_score=float(AT),
    )
    changes = RowChanges()
    changes.add(0, "1-0", event)

    row = changes.messages["m"]
    assert row[3] is None
    assert row[6] is None


def test_duplicate_messages_within_a_batch_collapse_to_one_row_each() -> None:
    changes = RowChanges()
    changes.add(0, "1700000000000-0", _received(1))
    changes.add(0, "1700000000000-1", _received(1))
    changes.add(0, "1700000000000-2", _received(2))

    assert list(changes.messages) == ["m-1", "m-2"]
    assert list(changes.users) == ["u-1"]
    assert list(changes.identities) == ["i-1"]


def test_the_first_sighting_of_a_user_in_a_batch_is_kept() -> None:
    later = MessageReceived(
        event_id="e-late", occurred_at=AT + 9_000, user_id="u-1", identity_id="i-1",
        message_id="m-late", channel="whatsapp", channel_user_key="+919130099484",
        source_message_id="wamid.late", content_type="text", text="later",
        client_timestamp=None, received_at=AT + 9_000, tracking_score=float(AT + 9_000),
    )
    changes = RowChanges()
    changes.add(0, "1-0", _received(1))
    changes.add(0, "1-1", later)

    assert changes.users == {"u-1": AT_US}
    assert changes.identities["i-1"][3] == AT_US
    assert len(changes.messages) == 2


def test_a_reply_sent_gives_a_reply_update_of_its_message() -> None:
    changes = RowChanges()
    changes.add(0, "1-0", _reply("m-1", "hello back", AT + 500))

    assert changes.replies == {"m-1": ((AT + 500) * 1_000, "hello back", "wamid.out")}
    assert changes.messages == {}
    assert changes.users == {}


def test_the_later_reply_of_a_batch_wins() -> None:
    changes = RowChanges()
    changes.add(0, "1-0", _reply("m-1", "first", AT + 1))
    changes.add(0, "1-1", _reply("m-1", "second", AT + 2))

    assert changes.replies == {"m-1": ((AT + 2) * 1_000, "second", "wamid.out")}


def test_a_summary_created_gives_a_summary_row() -> None:
    changes = RowChanges()
    changes.add(0, "1-0", _summary())

    assert changes.summaries == {
        "s-1": ("u-1", (AT - 1_000) * 1_000, AT_US, AT_US, "ok", "summary", "llama",
                "v1", 4, "h", None),
    }
    assert changes.messages == {}
    assert changes.replies == {}


def test_duplicate_summaries_within_a_batch_collapse_to_the_first() -> None:
    changes = RowChanges()
    changes.add(0, "1-0", _summary("s-1", "first"))
    changes.add(0, "1-1", _summary("s-1", "second"))

    assert list(changes.summaries) == ["s-1"]
    assert changes.summaries["s-1"][5] == "first"


def test_reply_failed_and_summary_requested_change_no_table() -> None:
    changes = RowChanges()
    changes.add(0, "1-0", ReplyFailed(event_id="e-f", occurred_at=AT, message_id="m-1",
                                      user_id="u-1", attempts=3, error="x", retryable=False))
    changes.add(0, "1-1", SummaryRequested(event_id="e-q", occurred_at=AT, user_id="u-1"))

    assert (changes.users, changes.identities, changes.messages, changes.replies,
            changes.summaries) == ({}, {}, {}, {}, {})
    assert len(changes.archive) == 2


def test_every_event_is_archived_with_its_position_type_version_and_body() -> None:
    events = [
        _received(1),
        _received(1),
        _reply(),
        ReplyFailed(event_id="e-f", occurred_at=AT, message_id="m-1", user_id="u-1",
                    attempts=1, error="x", retryable=True),
        SummaryRequested(event_id="e-q", occurred_at=AT, user_id="u-1"),
        _summary(),
    ]
    changes = RowChanges()
    for seq, event in enumerate(events):
        changes.add(2, f"1700000000000-{seq}", event)

    assert changes.archive == [
        (e.event_id, 2, 1_700_000_000_000, seq, type(e).__name__, SCHEMA_VERSION,
         e.occurred_at, encode_body(e))
        for seq, e in enumerate(events)
    ]


def test_columns_turn_rows_into_one_list_per_column_led_by_the_ids() -> None:
    rows = {"a": (1, "x"), "b": (2, "y"), "c": (3, "z")}

    assert columns(rows) == [["a", "b", "c"], [1, 2, 3], ["x", "y", "z"]]


def test_columns_of_no_rows_is_empty() -> None:
    assert columns({}) == []


def test_columns_of_message_rows_line_up_with_their_ids() -> None:
    changes = RowChanges()
    changes.add(0, "1-0", _received(1))
    changes.add(0, "1-1", _received(2))

    cols = columns(changes.messages)

    assert len(cols) == 1 + 8
    assert cols[0] == ["m-1", "m-2"]
    assert cols[6] == ["text 1", "text 2"]
    assert cols[8] == ["wamid.1", "wamid.2"]
    assert all(len(c) == 2 for c in cols)


BSUID = "US.13491208655302741918"


def _linked(n: int, *, phone: str | None, username: str | None = None) -> MessageReceived:
    key = phone or BSUID
    return MessageReceived(
        event_id=f"e-l{n}", occurred_at=AT + n, user_id="u-1",
        identity_id=identity_id_for("whatsapp", key), message_id=f"m-l{n}", channel="whatsapp",
        channel_user_key=key, source_message_id=f"wamid.l{n}", content_type="text",
        text="x", client_timestamp=None, received_at=AT + n, tracking_score=float(AT + n),
        phone=phone, bsuid=BSUID, parent_bsuid="US.ENT.1", username=username,
    )


def test_a_message_naming_a_phone_and_a_bsuid_gives_both_identities_of_one_user() -> None:
    changes = RowChanges()
    changes.add(0, "1-0", _linked(1, phone="+919130099484", username="jane"))

    phone_row = changes.identities[identity_id_for("whatsapp", "+919130099484")]
    bsuid_row = changes.identities[identity_id_for("whatsapp", BSUID)]
    assert phone_row[0] == bsuid_row[0] == "u-1"
    assert (phone_row[4], bsuid_row[4]) == ("phone", "bsuid")
    assert bsuid_row[5:] == ("US.ENT.1", "jane")


def test_the_latest_username_given_is_kept_and_a_missing_one_erases_nothing() -> None:
    changes = RowChanges()
    changes.add(0, "1-0", _linked(1, phone=None, username="jane"))
    changes.add(0, "1-1", _linked(2, phone=None, username="jane_doe"))
    changes.add(0, "1-2", _linked(3, phone=None, username=None))

    assert changes.identities[identity_id_for("whatsapp", BSUID)][6] == "jane_doe"


def test_a_message_unreadable_gives_an_unreadable_row_and_its_recovery_marks_it() -> None:
    unreadable = MessageUnreadable(event_id="u-e", occurred_at=AT, reason="no usable sender",
                                   raw_message='{"id":"w"}', raw_contacts=None, received_at=AT)
    recovered = msgspec.structs.replace(_received(1), recovered_from="u-e")
    changes = RowChanges()
    changes.add(0, "1-0", recovered)  # the marker may come first: another partition
    changes.add(1, "1-0", unreadable)

    assert changes.unreadable == {"u-e": (AT_US, "no usable sender", '{"id":"w"}', None)}
    assert changes.recovered == {"u-e": "m-1"}


def _status(status: str, code: int | None = None) -> DeliveryStatusReceived:
    return DeliveryStatusReceived(
        event_id=f"s-{status}", occurred_at=AT, outbound_message_id="wamid.out", status=status,
        status_at=1_700_000_000, recipient=BSUID, recipient_bsuid=BSUID, error_code=code,
        error_title=None, received_at=AT)


@pytest.mark.parametrize("order", [("sent", "delivered", "read"), ("read", "sent", "delivered"),
                                   ("delivered", "read", "sent")])
def test_statuses_in_any_order_leave_the_furthest_one(order: tuple[str, ...]) -> None:
    changes = RowChanges()
    for index, status in enumerate(order):
        changes.add(0, f"1-{index}", _status(status))

    assert changes.statuses["wamid.out"][:2] == ("read", 3)


def test_a_failed_status_keeps_its_error_code() -> None:
    changes = RowChanges()
    changes.add(0, "1-0", _status("sent"))
    changes.add(0, "1-1", _status("failed", 131047))

    assert changes.statuses["wamid.out"][0] == "failed"
    assert changes.statuses["wamid.out"][5] == 131047


def test_a_sealed_message_gives_the_row_of_its_plaintext_and_archives_it_sealed() -> None:
    key, _ = new_data_key()
    plain = _received(raw={"id": "wamid.1", "text": {"body": "nul \x00 and é"}})
    sealed = seal_event(plain, key)
    opened, expected = RowChanges(keyring={key.key_id: key}), RowChanges()
    opened.add(0, "1-0", sealed)
    expected.add(0, "1-0", plain)
    assert opened.messages == expected.messages
    assert "\\ufffd" in opened.messages["m-1"][6]
    assert opened.archive[0][7] == encode_body(sealed)
    erased = RowChanges()
    erased.add(0, "1-0", sealed)
    assert erased.messages["m-1"][5:7] == (ERASED, None)


def test_sealed_replies_summaries_and_usernames_give_the_rows_of_their_plaintext() -> None:
    key, _ = new_data_key()
    plain = [_reply(), _summary(),
             msgspec.structs.replace(_received(), channel_user_key="US.1", phone=None,
                                     bsuid="US.1", username="jane_doe")]
    opened, expected, erased = RowChanges(keyring={key.key_id: key}), RowChanges(), RowChanges()
    for n, event in enumerate(plain):
        opened.add(0, f"{n}-0", seal_event(event, key))
        erased.add(0, f"{n}-0", seal_event(event, key))
        expected.add(0, f"{n}-0", event)
    assert (opened.replies, opened.summaries, opened.identities, opened.messages) == (
        expected.replies, expected.summaries, expected.identities, expected.messages)
    assert erased.replies["m-1"][1] == ERASED
    assert (erased.summaries["s-1"][5], erased.summaries["s-1"][9]) == (None, None)
    assert [row[6] for row in erased.identities.values()] == [None]


@pytest.mark.parametrize("ms", [0, 1, 999, 1_000, 1_001, AT, AT + 877, 4_102_444_800_999])
def test_row_times_are_the_microseconds_of_ms_to_datetime(ms: int) -> None:
    changes = RowChanges()
    changes.add(0, "1-0", msgspec.structs.replace(_received(), received_at=ms - 1))
    changes.add(0, "2-0", msgspec.structs.replace(_received(2), received_at=ms))
    created = changes.messages["m-2"][2]
    assert type(created) is int and _as_datetime(created) == ms_to_datetime(ms)


def test_a_phone_only_message_s_identity_row_is_that_of_the_general_fold() -> None:
    """The shortcut for a message naming only its own phone gives the row the general loop
    gives (``_add_named_identities``), the first sighting winning, with no username opened."""
    fast, general = RowChanges(), RowChanges()
    for n, at in ((1, AT + 5), (2, AT)):
        event = msgspec.structs.replace(_received(n), received_at=at, phone="+919130099484",
                                        username="\x1esealed:1:no-such-key:AAAA")
        fast.add(0, f"{n}-0", event)
        general._add_named_identities(event, at * 1_000, None)  # noqa: SLF001
    assert fast.identities == general.identities
    assert fast.identities["i-1"] == ("u-1", "whatsapp", "+919130099484",
                                      (AT + 5) * 1_000, "phone", None, None)
