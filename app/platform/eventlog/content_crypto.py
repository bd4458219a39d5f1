"""Content fields of events, sealed with their user's data key (crypto-shredding, SPEC §16).

A sealed value is a string ``SEALED_MARK + key_id + ":" + base64(nonce || AES-GCM ciphertext)``
in the event's own field, so the log keeps its shape and an event written before sealing
existed (plaintext, no mark) reads as it always did. Opening needs the data key by its id; once
``mecove forget`` destroyed it, a sealed field opens as ``ERASED`` (required text) or None.

Data keys are 256-bit AES-GCM keys, wrapped by the master key (``MasterKeys``); the wrapped
form names the master key's fingerprint so a rotation can tell old from new. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import os
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from schema.events import Event, MessageReceived, ReplySent, SummaryCreated

__all__ = [
    "CONTENT_FIELDS",
    "ERASED",
    "NONCE_BYTES",
    "NONCES_PER_DRAW",
    "SEALED_MARK",
    "DataKey",
    "Keyring",
    "MasterKeys",
    "erase_content",
    "has_plaintext_content",
    "new_data_key",
    "open_event",
    "open_sealed",
    "open_value",
    "seal_event",
    "seal_message",
    "seal_value",
    "key_owners",
    "sealed_key_id",
]

SEALED_MARK = "\x1esealed:1:"  # a record separator first: no typed message starts with it
_MARK_END = len(SEALED_MARK)
ERASED = "[erased]"
NONCE_BYTES = 12
NONCES_PER_DRAW = 4_096  # nonces drawn from the OS at once (``_RandomNonces``)

# The fields that hold what a person wrote or what was made of it; the rest is metadata.
CONTENT_FIELDS: dict[type[Event], tuple[str, ...]] = {
    MessageReceived: ("text", "raw_payload", "username"),
    ReplySent: ("reply_text",),
    SummaryCreated: ("summary_text", "input_hash"),
}
REQUIRED_TEXT = frozenset({"text", "reply_text"})  # erased to ERASED; the others to None

_json = msgspec.json.Encoder()
_json_decode = msgspec.json.Decoder().decode
_base64_bytes = msgspec.json.Decoder(bytes).decode  # a JSON string of standard base64 -> bytes


class _RandomNonces:
    """96-bit AES-GCM nonces, each 12 fresh bytes of ``os.urandom`` used once.

    Drawn 4,096 at a time: one ``getrandom`` call per nonce cost as much as the encryption of
    a short message. Each nonce is as random as one ``os.urandom(12)`` and is handed out
    once: the draw is cut into nonces kept in a deque, and ``deque.popleft`` hands each to
    exactly one caller, also across threads (it is atomic; a lock per nonce cost ~4,500
    instructions, decision 0027). A forked child drops what its parent drew, so two
    processes never share a nonce. The analysis is that of random nonces: under one data
    key, about 2^32 sealed values keep the chance of a repeat under 2^-32 (NIST SP 800-38D
    §8.3) — a user writes far fewer. A counter with a per-process prefix would skip even the
    slicing, but its prefix would be drawn at every process start: see decision 0013.
    """

    def __init__(self) -> None:
        self._pool: deque[bytes] = deque()
        self.pop = self._pool.popleft  # raises IndexError when empty: then ``take``
        os.register_at_fork(after_in_child=self._pool.clear)

    def take(self) -> bytes:
        try:
            return self.pop()
        except IndexError:
            drawn = os.urandom(NONCE_BYTES * NONCES_PER_DRAW)
            # Threads that find the pool empty at once each add a draw of their own: more
            # nonces, never one handed out twice.
            self._pool.extend(drawn[start:start + NONCE_BYTES]
                              for start in range(0, len(drawn), NONCE_BYTES))
            return self.pop()


_nonces = _RandomNonces()
_pop_nonce = _nonces.pop  # per sealed field: the deque's own method, no Python frame


@dataclass(frozen=True, slots=True)
class DataKey:
    """One user's content key: its id (random, never reused) and the AES-GCM cipher."""

    key_id: str
    aead: AESGCM
    # Field name -> the associated data sealing it (``<key id>:<field>``), made on first use:
    # a writer seals every message of a user with the same key.
    associated_data: dict[str, bytes] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False)


Keyring = Mapping[str, DataKey | None]  # key id -> key; None (or absent) once destroyed


def new_data_key() -> tuple[DataKey, bytes]:
    """A fresh data key and its raw bytes (to wrap)."""
    raw = AESGCM.generate_key(bit_length=256)
    return DataKey(secrets.token_hex(16), AESGCM(raw)), raw


class MasterKeys:
    """The master key that wraps data keys, and the previous one during a rotation."""

    def __init__(self, current: bytes, previous: bytes | None = None) -> None:
        self._current = (_fingerprint(current), AESGCM(current))
        self._by_fingerprint = {self._current[0]: self._current[1]}
        if previous is not None:
            self._by_fingerprint.setdefault(_fingerprint(previous), AESGCM(previous))

    @staticmethod
    def parse(text: str) -> bytes:
        """``MECOVE_MASTER_KEY`` (base64 of 32 bytes) -> bytes; ValueError when it is not."""
        try:
            raw = base64.b64decode(text.strip(), validate=True)
        except ValueError as exc:
            raise ValueError("not base64") from exc
        if len(raw) != 32:
            raise ValueError(f"{len(raw)} bytes, expected 32")
        return raw

    @staticmethod
    def generate_text() -> str:
        """A new master key as ``MECOVE_MASTER_KEY`` holds it."""
        return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()

    def wrap(self, raw_key: bytes, key_id: str) -> str:
        """Data key -> ``<fingerprint>:<base64(nonce || ciphertext)>``, bound to its key id."""
        fingerprint, aead = self._current
        nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(nonce, raw_key, key_id.encode())
        return f"{fingerprint}:{base64.b64encode(nonce + sealed).decode()}"

    def raw_key(self, wrapped: str, key_id: str) -> bytes:
        """The raw data key ``wrapped`` holds; ValueError when no known master key opens it."""
        fingerprint, _, body = wrapped.partition(":")
        aead = self._by_fingerprint.get(fingerprint)
        if aead is None:
            raise ValueError(f"data key {key_id} is wrapped by an unknown master key")
        blob = binascii.a2b_base64(body)
        try:
            return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], key_id.encode())
        except InvalidTag as exc:
            raise ValueError(f"data key {key_id} does not unwrap") from exc

    def unwrap(self, wrapped: str, key_id: str) -> DataKey:
        """The data key of ``wrap``; ValueError when no known master key opens it."""
        return DataKey(key_id, AESGCM(self.raw_key(wrapped, key_id)))

    def rewrap(self, wrapped: str, key_id: str) -> str:
        """A wrapped key wrapped again with the current master key (rotation)."""
        return self.wrap(self.raw_key(wrapped, key_id), key_id)

    def is_current(self, wrapped: str) -> bool:
        """Whether ``wrapped`` is wrapped by the current master key."""
        return wrapped.partition(":")[0] == self._current[0]


def _fingerprint(master: bytes) -> str:
    return hashlib.sha256(b"mecove-master-key:" + master).hexdigest()[:12]


def seal_value(plaintext: str | bytes | msgspec.Raw, key: DataKey, field: str) -> str:
    """``plaintext`` (text, or its UTF-8 bytes, or a ``msgspec.Raw``'s) sealed with ``key``;
    the field name is authenticated with it."""
    try:
        nonce = _pop_nonce()
    except IndexError:
        nonce = _nonces.take()
    data = plaintext.encode() if isinstance(plaintext, str) else plaintext
    aad = key.associated_data.get(field)
    if aad is None:
        aad = key.associated_data[field] = f"{key.key_id}:{field}".encode()
    sealed = key.aead.encrypt(nonce, data, aad)
    text = binascii.b2a_base64(nonce + sealed, newline=False).decode()
    return f"{SEALED_MARK}{key.key_id}:{text}"


def open_value(value: str, keyring: Keyring, field: str) -> str | None:
    """A sealed value's plaintext; None when its key is gone; plaintext passes through."""
    if not value.startswith(SEALED_MARK):
        return value
    opened = open_sealed(value, keyring, field)
    return None if opened is None else opened.decode()


def open_sealed(value: str, keyring: Keyring, field: str) -> bytes | None:
    """The plaintext bytes of a value known to carry ``SEALED_MARK``; None without its key.
    Parsed in place: a caller that builds rows opens each field with this, no opened copy
    of the event made. The base64 (standard and padded, as every ``seal_value`` wrote it)
    goes through msgspec's decoder as a JSON string, half the instructions of ``binascii``'s
    loop; anything that decoder refuses goes to ``binascii``, as lenient as before."""
    colon = value.find(":", _MARK_END)  # the key id's end (``_key_id_of``, inlined: per field)
    if colon < 0:
        colon = len(value)
    key_id = value[_MARK_END:colon]
    key = keyring.get(key_id)
    if key is None:
        return None
    try:
        blob = _base64_bytes(f'"{value[colon + 1:]}"')
    except msgspec.DecodeError:  # not strict base64 (or not even a JSON string's content)
        blob = binascii.a2b_base64(value[colon + 1:])
    try:
        return key.aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:],
                                f"{key_id}:{field}".encode())
    except InvalidTag:
        return None  # not sealed by this key: unreadable is the only safe answer


def sealed_key_id(value: object) -> str | None:
    """The key id a sealed value names; None for plaintext or None."""
    if isinstance(value, str) and value.startswith(SEALED_MARK):
        return _key_id_of(value)
    return None


def _key_id_of(sealed: str) -> str:
    """The key id of a value known to carry ``SEALED_MARK`` (no copy of its body)."""
    colon = sealed.find(":", _MARK_END)
    return sealed[_MARK_END:colon] if colon >= 0 else sealed[_MARK_END:]


_KEEP = object()  # what a field change returns to leave the field as it is


def _change_content(event: Event, change: Callable[[str, Any], Any]) -> Event:
    """The event with each content field set to ``change(name, value)`` unless ``_KEEP``."""
    changes = {name: new for name in CONTENT_FIELDS.get(type(event), ())
               if (new := change(name, getattr(event, name))) is not _KEEP}
    return msgspec.structs.replace(event, **changes) if changes else event


def _sealed(value: Any, key: DataKey, field: str) -> Any:
    """A content field's value sealed with ``key``; None and sealed values come back as they
    are. A ``msgspec.Raw`` is JSON already, sealed through its buffer: the ingress keeps each
    message object's JSON as received (decision 0027)."""
    if value is None or (isinstance(value, str) and value.startswith(SEALED_MARK)):
        return value
    return seal_value(
        value if isinstance(value, (str, msgspec.Raw)) else _json.encode(value), key, field)


def seal_event(event: Event, key: DataKey) -> Event:
    """The event with its content fields sealed (events without content come back as is)."""
    changes: dict[str, Any] = {}
    for name in CONTENT_FIELDS.get(type(event), ()):  # a loop, not _change_content: per message
        value = getattr(event, name)
        if (sealed := _sealed(value, key, name)) is not value:
            changes[name] = sealed
    return msgspec.structs.replace(event, **changes) if changes else event


def seal_message(event: MessageReceived, key: DataKey) -> MessageReceived:
    """``seal_event`` of a received message, its three content fields named: the ingress
    seals every message, and ``seal_event``'s loop (the type's field names looked up, each
    value read with ``getattr``, a dict of changes) cost more than its result."""
    return msgspec.structs.replace(
        event, text=_sealed(event.text, key, "text"),
        raw_payload=_sealed(event.raw_payload, key, "raw_payload"),
        username=_sealed(event.username, key, "username"))


def open_event(event: Event, keyring: Keyring, *, payload_as_raw_json: bool = False) -> Event:
    """The event with its sealed fields opened, or erased where their key is gone.

    One pass over the content fields, each value parsed once: the projector and replay open
    every message, and there the parsing around AES-GCM cost more than AES-GCM itself.
    ``payload_as_raw_json`` leaves an opened ``raw_payload`` as the JSON it was sealed as
    (``msgspec.Raw``, which encodes verbatim) for a caller that only writes it back as JSON.
    """
    changes: dict[str, Any] | None = None
    for name in CONTENT_FIELDS.get(type(event), ()):
        value = getattr(event, name)
        if not (isinstance(value, str) and value.startswith(SEALED_MARK)):
            continue  # plaintext (written before sealing) or None: left as it is
        opened = open_sealed(value, keyring, name)
        if changes is None:
            changes = {}
        if opened is None:
            changes[name] = ERASED if name in REQUIRED_TEXT else None
        elif name != "raw_payload":
            changes[name] = opened.decode()
        else:
            changes[name] = msgspec.Raw(opened) if payload_as_raw_json else _json_decode(opened)
    return msgspec.structs.replace(event, **changes) if changes else event


def key_owners(events: Iterable[Event]) -> dict[str, str]:
    """Key id -> user id, for every key the events' sealed fields name."""
    found: dict[str, str] = {}
    for event in events:  # every message of a batch: ``_key_id_of`` inlined
        kind = type(event)
        if kind is MessageReceived:  # its fields named: no lookup, no getattr by name
            values: Iterable[object] = (event.text, event.raw_payload, event.username)  # type: ignore[attr-defined]
        elif (fields := CONTENT_FIELDS.get(kind)) is not None:
            values = [getattr(event, name) for name in fields]
        else:
            continue
        user_id = event.user_id  # type: ignore[attr-defined]
        for value in values:
            if type(value) is str and value.startswith(SEALED_MARK):
                colon = value.find(":", _MARK_END)
                found[value[_MARK_END:colon] if colon >= 0 else value[_MARK_END:]] = user_id
    return found


def has_plaintext_content(event: Event) -> bool:
    """True for an event written before sealing whose content is still readable."""
    return any(
        (value := getattr(event, name)) is not None and sealed_key_id(value) is None
        and value != ERASED
        for name in CONTENT_FIELDS.get(type(event), ())
    )


def erase_content(event: Event) -> Event:
    """The event with every content field erased (for rows written before sealing)."""
    return _change_content(event, lambda name, _: ERASED if name in REQUIRED_TEXT else None)
