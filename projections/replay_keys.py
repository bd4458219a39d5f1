"""A replay run's data keys: unwrapped once, and their AES-GCM objects made once too.

``UnwrappedKeys`` keeps raw key bytes across batches and makes a fresh AES-GCM object for every
key each batch uses (``opening_key``): ~2.5 KB of OpenSSL context a key is too much to keep in
the long-running projector. A replay run is a batch job whose pages of 5,000 messages from many
users name thousands of keys each, and making the object cost ~3–7 µs a key on this machine: on
100,000 messages of 10,000 users, ~78,000 objects for 10,000 keys. Here the object is kept
too, by key id, for the run (at most ``OBJECTS_KEPT``, ~50 MB; past it the oldest go).

It decides nothing: which keys a page may use is still settled by ``user_keys`` for every page
(``durable_keyring``, decision 0010); a key dropped from the memo (``forget``: destroyed, or no
longer in ``user_keys``) drops its object too.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.platform.eventlog.content_crypto import DataKey, MasterKeys
from app.platform.eventlog.unwrapped_keys import UnwrappedKeys

__all__ = ["OBJECTS_KEPT", "ReplayKeys"]

OBJECTS_KEPT = 20_000


class ReplayKeys(UnwrappedKeys):
    """``UnwrappedKeys`` whose keys' AES-GCM objects are kept for the run as well."""

    def __init__(self, master: MasterKeys, objects_kept: int = OBJECTS_KEPT) -> None:
        super().__init__(master)
        self.objects_kept = objects_kept
        self._objects: dict[str, DataKey] = {}

    def _kept(self, key: DataKey) -> DataKey:
        if len(self._objects) >= self.objects_kept:
            del self._objects[next(iter(self._objects))]
        self._objects[key.key_id] = key
        return key

    def unwrap(self, wrapped: str, key_id: str) -> DataKey:
        kept = self._objects.get(key_id)
        return kept if kept is not None else self._kept(super().unwrap(wrapped, key_id))

    def opening_key(self, key_id: str, raw: bytes) -> DataKey:  # type: ignore[override]
        kept = self._objects.get(key_id)
        return kept if kept is not None else self._kept(UnwrappedKeys.opening_key(key_id, raw))

    def forget(self, key_ids: Iterable[str]) -> None:
        listed = list(key_ids)
        super().forget(listed)
        for key_id in listed:
            self._objects.pop(key_id, None)
