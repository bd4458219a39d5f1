"""Data keys the projector (or a replay run) unwrapped, kept by key id across batches.

Unwrapping a data key (AES-GCM with the master key, then a new AES-GCM context) cost the
projector ~3–9 µs per key and batch: a batch of 5,000 messages names thousands of users' keys,
and each batch unwrapped them all again. This memo keeps the raw key bytes by key id (ids are
random and never reused, and every wrapping of an id — a rotation re-wraps — holds the same
bytes), so a key is unwrapped once per process.

It decides nothing: whether a batch may use a key is still settled by ``user_keys`` (and the
batch's own ``UserKeyIssued``) for every batch, exactly as without it (decision 0010); the
memo only spares the unwrapping of a key ``user_keys`` still holds. A key is dropped when
``user_keys`` no longer holds it and when a ``UserForgotten`` naming it is folded, so a
destroyed key's bytes do not outlive its erasure in this process. Raw bytes, not AES-GCM
objects: ~184 bytes a key (measured with tracemalloc) against ~2.5 KB, so ``LIMIT`` keys are
about 9 MB; past it the oldest are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app.platform.eventlog.content_crypto import DataKey, MasterKeys

LIMIT = 50_000  # keys (~9 MB)


class UnwrappedKeys:
    """``MasterKeys.unwrap`` remembered by key id (raw bytes, at most ``limit`` keys)."""

    def __init__(self, master: MasterKeys, limit: int = LIMIT) -> None:
        self.master = master
        self.limit = limit
        self._raw: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._raw

    def unwrap(self, wrapped: str, key_id: str) -> DataKey:
        """The data key ``wrapped`` holds (unwrapped only the first time its id is seen)."""
        raw = self._raw.get(key_id)
        if raw is None:
            raw = self.master.raw_key(wrapped, key_id)
            if len(self._raw) >= self.limit:
                del self._raw[next(iter(self._raw))]
            self._raw[key_id] = raw
        return DataKey(key_id, AESGCM(raw))

    def held(self, key_ids: Iterable[str]) -> dict[str, bytes]:
        """The raw bytes of those of ``key_ids`` unwrapped before (the caller checks that
        ``user_keys`` still holds them before using one: ``opening_key``)."""
        return {k: raw for k in key_ids if (raw := self._raw.get(k)) is not None}

    @staticmethod
    def opening_key(key_id: str, raw: bytes) -> DataKey:
        """A key from ``held``'s bytes."""
        return DataKey(key_id, AESGCM(raw))

    def forget(self, key_ids: Iterable[str]) -> None:
        """Drop these keys (destroyed, or no longer in ``user_keys``)."""
        for key_id in key_ids:
            self._raw.pop(key_id, None)
