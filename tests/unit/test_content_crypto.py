"""Sealing content fields: round trips, erasure when the key is gone, plaintext of before."""

from __future__ import annotations

import base64
import binascii
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.exceptions import InvalidTag

from app.platform.eventlog import content_crypto
from app.platform.eventlog.content_crypto import (
    CONTENT_FIELDS,
    ERASED,
    NONCE_BYTES,
    NONCES_PER_DRAW,
    SEALED_MARK,
    MasterKeys,
    has_plaintext_content,
    key_owners,
    new_data_key,
    open_event,
    open_value,
    seal_event,
    seal_message,
    seal_value,
    sealed_key_id,
)
from schema.events import MessageReceived, ReplySent, SummaryCreated

MESSAGE = MessageReceived(
    event_id="e", occurred_at=1, user_id="u-1", identity_id="i", message_id="m",
    channel="whatsapp", channel_user_key="+15550001111", source_message_id="wamid.x",
    content_type="text", text="secret words", client_timestamp=1, received_at=1,
    tracking_score=1.0, raw_payload={"text": {"body": "secret words"}}, username="ann")
REPLY = ReplySent(event_id="r", occurred_at=1, message_id="m", user_id="u-1",
                  reply_text="secret reply", replied_at=1, contextual=False,
                  outbound_message_id=None, model=None, fallback_used=False)
SUMMARY = SummaryCreated(event_id="s", occurred_at=1, summary_id="s", user_id="u-1",
                         range_start=0, range_end=1, status="success", summary_text="gist",
                         model_name=None, prompt_version=None, input_messages_count=1,
                         input_hash="abc", error=None)


@pytest.mark.parametrize("event", [MESSAGE, REPLY, SUMMARY])
def test_a_sealed_event_opens_to_the_original_with_its_key(event: object) -> None:
    key, _ = new_data_key()
    sealed = seal_event(event, key)  # type: ignore[arg-type]
    assert "secret" not in repr(sealed) and "gist" not in repr(sealed)
    assert key_owners([sealed]) == {key.key_id: "u-1"}
    assert open_event(sealed, {key.key_id: key}) == event


def test_without_its_key_a_sealed_message_opens_erased() -> None:
    key, _ = new_data_key()
    opened = open_event(seal_event(MESSAGE, key), {})
    assert isinstance(opened, MessageReceived)
    assert (opened.text, opened.raw_payload, opened.username) == (ERASED, None, None)


def test_a_value_sealed_for_one_field_does_not_open_as_another() -> None:
    key, _ = new_data_key()
    assert open_value(seal_value("x", key, "text"), {key.key_id: key}, "reply_text") is None


def test_plaintext_of_before_sealing_passes_through_and_is_recognised() -> None:
    assert open_event(MESSAGE, {}) == MESSAGE
    assert has_plaintext_content(MESSAGE)
    key, _ = new_data_key()
    assert not has_plaintext_content(seal_event(MESSAGE, key))


def test_a_rotated_master_key_still_unwraps_and_rewraps_to_the_new_one() -> None:
    old, new = (MasterKeys.parse(MasterKeys.generate_text()) for _ in range(2))
    key, raw = new_data_key()
    wrapped = MasterKeys(old).wrap(raw, key.key_id)
    rotating = MasterKeys(new, previous=old)
    rewrapped = rotating.rewrap(wrapped, key.key_id)
    assert not rotating.is_current(wrapped) and rotating.is_current(rewrapped)
    opened = MasterKeys(new).unwrap(rewrapped, key.key_id)
    assert open_value(seal_value("hi", key, "text"), {key.key_id: opened}, "text") == "hi"
    with pytest.raises(ValueError, match="unknown master key"):
        MasterKeys(new).unwrap(wrapped, key.key_id)


def _nonce_of(sealed: str) -> bytes:
    return base64.b64decode(sealed.rpartition(":")[2])[:NONCE_BYTES]


def test_every_sealed_value_gets_its_own_nonce_across_pool_refills() -> None:
    key, _ = new_data_key()
    count = 2 * NONCES_PER_DRAW + 3  # two refills of the pool
    nonces = {_nonce_of(seal_value("same words", key, "text")) for _ in range(count)}
    assert len(nonces) == count


# Run in a fresh, single-threaded interpreter: fork() in pytest's process (which has threads)
# may deadlock the child, and Python 3.12+ warns about it.
_FORK_SCRIPT = """
import os, sys
from app.platform.eventlog.content_crypto import new_data_key, seal_value
key, _ = new_data_key()
seal_value("draws a pool in the parent", key, "text")
reader, writer = os.pipe()
pid = os.fork()
if pid == 0:  # the child: its next sealed value, to the parent
    try:
        os.write(writer, seal_value("child", key, "text").encode())
    finally:
        os._exit(0)
os.close(writer)
child = os.read(reader, 4096).decode()
os.waitpid(pid, 0)
print(child)
print(seal_value("parent", key, "text"))
"""


def test_a_forked_child_draws_nonces_of_its_own() -> None:
    done = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=60, check=True)
    child, parent = done.stdout.split()
    assert len(_nonce_of(child)) == NONCE_BYTES
    assert _nonce_of(child) != _nonce_of(parent)  # the parent's pool was not inherited


def test_a_value_in_the_logged_format_opens_whatever_base64_wrote_it() -> None:
    """Logs written before this code keep opening: mark, key id, ':', base64(nonce || ct)."""
    key, _ = new_data_key()
    nonce = os.urandom(NONCE_BYTES)
    body = key.aead.encrypt(nonce, "héllo".encode(), f"{key.key_id}:text".encode())
    value = f"{SEALED_MARK}{key.key_id}:{base64.b64encode(nonce + body).decode()}"
    assert sealed_key_id(value) == key.key_id
    assert open_value(value, {key.key_id: key}, "text") == "héllo"
    assert open_value(value, {}, "text") is None


def test_the_raw_payload_can_stay_the_json_it_was_sealed_as() -> None:
    key, _ = new_data_key()
    sealed = seal_event(MESSAGE, key)
    opened = open_event(sealed, {key.key_id: key}, payload_as_raw_json=True)
    assert isinstance(opened, MessageReceived) and isinstance(opened.raw_payload, msgspec.Raw)
    assert msgspec.json.decode(msgspec.json.encode(opened.raw_payload)) == MESSAGE.raw_payload
    assert (opened.text, opened.username) == (MESSAGE.text, MESSAGE.username)
    erased = open_event(sealed, {}, payload_as_raw_json=True)
    assert (erased.text, erased.raw_payload) == (ERASED, None)  # type: ignore[attr-defined]


def test_only_the_sealed_fields_of_an_event_are_opened() -> None:
    key, _ = new_data_key()
    partly = msgspec.structs.replace(MESSAGE, text=seal_value("secret words", key, "text"))
    assert open_event(partly, {key.key_id: key}) == MESSAGE
    assert open_event(partly, {}) == msgspec.structs.replace(MESSAGE, text=ERASED)


def test_a_raw_json_payload_is_sealed_as_received_and_opens_to_the_same_object() -> None:
    key, _ = new_data_key()
    as_received = b'{ "id" : "wamid.1", "text": {"body": "caf\\u00e9"} }'
    event = msgspec.structs.replace(MESSAGE, raw_payload=msgspec.Raw(as_received))

    sealed = seal_event(event, key)

    assert isinstance(sealed, MessageReceived) and isinstance(sealed.raw_payload, str)
    assert sealed.raw_payload.startswith(SEALED_MARK)
    as_json = open_event(sealed, {key.key_id: key}, payload_as_raw_json=True)
    assert bytes(as_json.raw_payload) == as_received  # type: ignore[attr-defined, arg-type]
    opened = open_event(sealed, {key.key_id: key})
    assert opened.raw_payload == {"id": "wamid.1", "text": {"body": "café"}}  # type: ignore[attr-defined]


def test_nonces_are_never_handed_out_twice_across_draws() -> None:
    nonces = content_crypto._RandomNonces()
    taken = [nonces.take() for _ in range(NONCES_PER_DRAW * 2 + 5)]

    assert len(set(taken)) == len(taken)
    assert {len(nonce) for nonce in taken} == {NONCE_BYTES}


@pytest.mark.parametrize("payload", [MESSAGE.raw_payload, msgspec.Raw(b'{"a": 1}'), None])
@pytest.mark.parametrize("username", ["ann", None])
def test_a_message_sealed_by_name_seals_what_seal_event_seals(
    payload: object, username: str | None
) -> None:
    assert CONTENT_FIELDS[MessageReceived] == ("text", "raw_payload", "username")
    key, _ = new_data_key()
    message = msgspec.structs.replace(MESSAGE, raw_payload=payload, username=username)
    by_name = seal_message(message, key)
    by_loop = seal_event(message, key)
    assert isinstance(by_loop, MessageReceived)
    for name in CONTENT_FIELDS[MessageReceived]:  # nonces differ: compare what is sealed
        assert (getattr(by_name, name) is None) == (getattr(by_loop, name) is None)
        assert sealed_key_id(getattr(by_name, name)) == sealed_key_id(getattr(by_loop, name))
    keyring = {key.key_id: key}
    assert open_event(by_name, keyring) == open_event(by_loop, keyring)
    assert seal_message(by_name, key) == by_name  # sealed already: left as it is


@pytest.mark.parametrize("spoil", [
    lambda b64: b64 + "\n",  # a newline after it (binascii's default)
    lambda b64: b64[:20] + "\n" + b64[20:],  # whitespace inside
    lambda b64: b64.rstrip("="),  # padding left out where it decodes all the same
    lambda b64: b64[:8] + '"' + b64[8:],  # a character no base64 (nor JSON string) holds
])
def test_base64_that_is_not_strict_still_opens_as_binascii_reads_it(spoil: Any) -> None:
    """Strict base64 goes through msgspec; anything else through ``binascii`` as before:
    the same plaintext, or the same error, for every value."""
    key, _ = new_data_key()
    sealed = seal_value("héllo wörld", key, "text")
    head, _, b64 = sealed.rpartition(":")
    value = f"{head}:{spoil(b64)}"
    try:
        expected: object = key.aead.decrypt(*_split(binascii.a2b_base64(spoil(b64))),
                                             f"{key.key_id}:text".encode()).decode()
    except (ValueError, InvalidTag) as exc:
        expected = type(exc)
    try:
        opened: object = open_value(value, {key.key_id: key}, "text")
    except ValueError as exc:
        opened = type(exc)
    assert opened == (None if expected is InvalidTag else expected)


def _split(blob: bytes) -> tuple[bytes, bytes]:
    return blob[:NONCE_BYTES], blob[NONCE_BYTES:]
