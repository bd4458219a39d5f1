"""A data key read by the caller's own round trip (``queue_read`` → ``learn``) is cached only
when it is the key asked for: a replaced or destroyed key, or a failed read, caches nothing."""

from __future__ import annotations

from app.platform.eventlog.content_crypto import (
    MasterKeys,
    new_data_key,
    open_value,
    seal_value,
)
from app.platform.eventlog.content_keys import ContentKeys
from app.platform.eventlog.keys import Keys


def _store() -> tuple[ContentKeys, MasterKeys]:
    master = MasterKeys(MasterKeys.parse(MasterKeys.generate_text()))
    return ContentKeys(redis=_NoRedis(), keys=Keys("t", 1), master=master), master  # type: ignore[arg-type]


class _NoRedis:
    """``learn`` must not need Redis; registering a script is all the constructor does."""

    def register_script(self, source: str) -> object:
        return object()


def test_the_key_asked_for_is_cached_and_opens_what_it_sealed() -> None:
    store, master = _store()
    key, raw = new_data_key()
    sealed = seal_value("hello", key, "text")
    assert not store.is_cached(key.key_id)
    store.learn(key.key_id, [key.key_id.encode(), master.wrap(raw, key.key_id).encode()])
    assert store.is_cached(key.key_id)
    ring = {key.key_id: store._reading[key.key_id]}
    assert open_value(sealed, ring, "text") == "hello"


def test_a_replaced_destroyed_or_failed_read_caches_nothing() -> None:
    store, master = _store()
    key, raw = new_data_key()
    other, other_raw = new_data_key()
    store.learn(key.key_id, [other.key_id.encode(), master.wrap(other_raw, other.key_id).encode()])
    store.learn(key.key_id, [None, None])  # the key was destroyed: the hash is gone
    store.learn(key.key_id, ConnectionError("redis went away"))
    assert not store.is_cached(key.key_id) and not store.is_cached(other.key_id)
