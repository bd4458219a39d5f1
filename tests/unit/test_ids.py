"""Deterministic UUIDv5 ids: duplicates and replays converge on the same rows."""

from __future__ import annotations

import uuid

from schema.ids import event_id_for, identity_id_for, message_id_for, user_id_for

KEY = "+919130099484"


def _is_uuid5(value: str) -> bool:
    parsed = uuid.UUID(value)
    return str(parsed) == value and parsed.version == 5


def test_the_same_inputs_always_give_the_same_ids() -> None:
    identity = identity_id_for("whatsapp", KEY)

    assert identity_id_for("whatsapp", KEY) == identity
    assert user_id_for(identity) == user_id_for(identity)
    assert message_id_for(identity, "wamid.1") == message_id_for(identity, "wamid.1")
    assert event_id_for("MessageReceived", "m") == event_id_for("MessageReceived", "m")


def test_ids_are_canonical_uuid5_strings() -> None:
    identity = identity_id_for("whatsapp", KEY)

    assert _is_uuid5(identity)
    assert _is_uuid5(user_id_for(identity))
    assert _is_uuid5(message_id_for(identity, "wamid.1"))
    assert _is_uuid5(event_id_for("ReplySent", "m"))


def test_ids_do_not_change_between_releases() -> None:
    namespace = uuid.UUID("6f0e7c1a-4d0b-5a52-9c2e-6d65636f7665")

    assert identity_id_for("whatsapp", KEY) == str(uuid.uuid5(namespace, f"whatsapp:{KEY}"))


def test_distinct_senders_get_distinct_identities() -> None:
    keys = [f"+9191300994{i:02d}" for i in range(100)]

    assert len({identity_id_for("whatsapp", k) for k in keys}) == 100


def test_the_same_key_on_another_channel_is_another_identity() -> None:
    assert identity_id_for("whatsapp", KEY) != identity_id_for("sms", KEY)


def test_distinct_wamids_get_distinct_message_ids() -> None:
    identity = identity_id_for("whatsapp", KEY)

    assert len({message_id_for(identity, f"wamid.{i}") for i in range(100)}) == 100


def test_the_same_wamid_from_two_senders_gives_two_messages() -> None:
    first = identity_id_for("whatsapp", KEY)
    second = identity_id_for("whatsapp", "+14155550100")

    assert message_id_for(first, "wamid.1") != message_id_for(second, "wamid.1")


def test_each_kind_of_event_about_one_subject_has_its_own_id() -> None:
    kinds = ["MessageReceived", "ReplySent", "ReplyFailed", "SummaryRequested",
             "SummaryCreated"]

    assert len({event_id_for(k, "subject") for k in kinds}) == len(kinds)
    assert event_id_for("ReplySent", "a") != event_id_for("ReplySent", "b")


def test_the_user_of_an_identity_is_stable_and_differs_from_the_identity() -> None:
    identity = identity_id_for("whatsapp", KEY)
    user = user_id_for(identity)

    assert user == user_id_for(identity_id_for("whatsapp", KEY))
    assert user != identity
    assert user_id_for(identity_id_for("whatsapp", "+14155550100")) != user


def test_ids_of_different_kinds_about_the_same_text_do_not_collide() -> None:
    identity = identity_id_for("whatsapp", KEY)
    message = message_id_for(identity, "wamid.1")
    ids = {identity, user_id_for(identity), message, event_id_for("MessageReceived", message)}

    assert len(ids) == 4


def test_the_fast_ids_equal_the_standard_library_uuid5() -> None:
    import uuid

    from schema.ids import NAMESPACE, identity_id_for

    for key in ("+919130099484", "+15550001111", "+4915123456789"):
        assert identity_id_for("whatsapp", key) == str(uuid.uuid5(NAMESPACE, f"whatsapp:{key}"))


def test_every_id_kind_equals_the_standard_uuid5_for_many_names() -> None:
    namespace = uuid.UUID("6f0e7c1a-4d0b-5a52-9c2e-6d65636f7665")
    # Enough names for every value of the digit that carries the variant bits.
    names = [f"m-{i}-é" for i in range(512)]
    variant_digits = set()
    for name in names:
        expected = str(uuid.uuid5(namespace, f"event:MessageReceived:{name}"))
        assert event_id_for("MessageReceived", name) == expected
        assert message_id_for("i", name) == str(uuid.uuid5(namespace, f"i:{name}"))
        variant_digits.add(expected[19])
    assert variant_digits == set("89ab")
