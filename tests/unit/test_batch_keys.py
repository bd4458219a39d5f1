"""BatchKeys: a key's AES-GCM object is kept from one batch to the next, no longer, and goes
with the key when it is forgotten."""

from __future__ import annotations

import os

from app.platform.eventlog.content_crypto import MasterKeys
from projections.batch_keys import BatchKeys


def test_an_object_used_by_the_batch_before_is_used_again() -> None:
    master = MasterKeys(os.urandom(32))
    raw = os.urandom(32)
    keys = BatchKeys(master)
    first = keys.unwrap(master.wrap(raw, "k1"), "k1")
    keys.next_batch()
    assert keys.opening_key("k1", keys.held(["k1"])["k1"]) is first
    keys.next_batch()
    assert keys.opening_key("k1", raw) is first


def test_an_object_a_batch_did_not_use_goes() -> None:
    keys = BatchKeys(MasterKeys(os.urandom(32)))
    raw = os.urandom(32)
    first = keys.opening_key("k1", raw)
    keys.next_batch()
    keys.next_batch()
    again = keys.opening_key("k1", raw)
    assert again is not first
    nonce = os.urandom(12)
    assert again.aead.decrypt(nonce, first.aead.encrypt(nonce, b"hi", None), None) == b"hi"


def test_a_forgotten_key_loses_its_bytes_and_its_object() -> None:
    master = MasterKeys(os.urandom(32))
    raw = os.urandom(32)
    keys = BatchKeys(master)
    first = keys.unwrap(master.wrap(raw, "k1"), "k1")
    keys.next_batch()
    keys.forget(iter(["k1"]))
    assert "k1" not in keys and keys.held(["k1"]) == {}
    assert keys.opening_key("k1", raw) is not first


def test_a_batch_keeps_at_most_objects_kept() -> None:
    keys = BatchKeys(MasterKeys(os.urandom(32)), objects_kept=2)
    made = {k: keys.opening_key(k, os.urandom(32)) for k in ("a", "b", "c")}
    keys.next_batch()
    assert keys.opening_key("a", os.urandom(32)) is made["a"]
    assert keys.opening_key("c", os.urandom(32)) is not made["c"]
