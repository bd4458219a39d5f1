"""ReplayKeys: a replay run makes each key's AES-GCM object once, and forgets it with the key."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.platform.eventlog.content_crypto import MasterKeys
from projections.replay_keys import ReplayKeys


def _opens(key_id: str, raw: bytes, keys: ReplayKeys) -> bytes:
    """What the key ``keys`` gives for ``key_id`` decrypts of something sealed with ``raw``."""
    nonce = os.urandom(12)
    sealed = AESGCM(raw).encrypt(nonce, b"hello", None)
    return keys.opening_key(key_id, raw).aead.decrypt(nonce, sealed, None)


def test_a_key_is_unwrapped_and_made_once_for_the_run() -> None:
    master = MasterKeys(os.urandom(32))
    raw = os.urandom(32)
    keys = ReplayKeys(master)
    first = keys.unwrap(master.wrap(raw, "k1"), "k1")
    assert keys.unwrap(master.wrap(raw, "k1"), "k1") is first
    assert keys.opening_key("k1", keys.held(["k1"])["k1"]) is first
    assert _opens("k1", raw, keys) == b"hello"


def test_a_forgotten_key_loses_its_bytes_and_its_object() -> None:
    master = MasterKeys(os.urandom(32))
    raw = os.urandom(32)
    keys = ReplayKeys(master)
    first = keys.opening_key("k1", raw)
    keys.unwrap(master.wrap(raw, "k1"), "k1")
    keys.forget(iter(["k1"]))
    assert "k1" not in keys and keys.held(["k1"]) == {}
    assert keys.opening_key("k1", raw) is not first


def test_past_the_limit_the_oldest_objects_go() -> None:
    keys = ReplayKeys(MasterKeys(os.urandom(32)), objects_kept=2)
    made = {k: keys.opening_key(k, os.urandom(32)) for k in ("a", "b", "c")}
    assert keys.opening_key("c", os.urandom(32)) is made["c"]
    assert keys.opening_key("b", os.urandom(32)) is made["b"]
    assert keys.opening_key("a", os.urandom(32)) is not made["a"]
