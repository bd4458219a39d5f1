"""The projector's data keys: raw bytes kept across batches, AES-GCM objects for two batches.

``UnwrappedKeys`` makes a fresh AES-GCM object for every key each batch uses: a drain's batch
of 5,000 messages of 10,000 senders names ~3,900 keys, and ``AESGCM(raw)`` plus its first
decrypt's context set-up cost ~1.7 µs a key, ~5.5 ms a batch (bench/README.md, "What limits
the drain"). Consecutive batches name mostly the same senders, so the objects the last batch
used are kept for the next one: each batch's objects are those it took from the batch before,
or fresh ones; the rest go when the next batch starts. The ring of the batch being written
holds those objects anyway while the next one is prepared, so the peak memory is that of two
batches' rings, as without it (~2.5 KB a key; at most ``OBJECTS_KEPT`` a batch).

It decides nothing: which keys a batch may use is still settled by ``user_keys`` for every
batch (``durable_keyring``, decision 0010) before ``opening_key`` is asked; a key dropped
from the memo (``forget``: destroyed, or no longer in ``user_keys``) drops its object too.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.platform.eventlog.content_crypto import DataKey, MasterKeys
from app.platform.eventlog.unwrapped_keys import UnwrappedKeys

__all__ = ["OBJECTS_KEPT", "BatchKeys"]

OBJECTS_KEPT = 6_000  # per batch: ~15 MB at most (a batch of 5,000 names at most 5,000)


class BatchKeys(UnwrappedKeys):
    """``UnwrappedKeys`` whose AES-GCM objects last from one batch to the next."""

    def __init__(self, master: MasterKeys, objects_kept: int = OBJECTS_KEPT) -> None:
        super().__init__(master)
        self.objects_kept = objects_kept
        self._current: dict[str, DataKey] = {}  # objects handed out since ``next_batch``
        self._previous: dict[str, DataKey] = {}  # those of the batch before

    def next_batch(self) -> None:
        """A new batch starts: the objects the batch before did not take again go."""
        self._previous = self._current
        self._current = {}

    def _kept(self, key_id: str, raw: bytes | None, wrapped: str | None) -> DataKey:
        key = self._current.get(key_id)
        if key is not None:
            return key
        key = self._previous.pop(key_id, None)
        if key is None:
            key = (UnwrappedKeys.opening_key(key_id, raw) if raw is not None
                   else super().unwrap(wrapped or "", key_id))
        if len(self._current) < self.objects_kept:
            self._current[key_id] = key
        return key

    def unwrap(self, wrapped: str, key_id: str) -> DataKey:
        return self._kept(key_id, None, wrapped)

    def opening_key(self, key_id: str, raw: bytes) -> DataKey:  # type: ignore[override]
        return self._kept(key_id, raw, None)

    def forget(self, key_ids: Iterable[str]) -> None:
        listed = list(key_ids)
        super().forget(listed)
        for key_id in listed:
            self._current.pop(key_id, None)
            self._previous.pop(key_id, None)
