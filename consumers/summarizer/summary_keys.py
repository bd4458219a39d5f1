"""The summarizer's Redis keys, in the user's partition (``Keys.key``); names are stable data."""

from __future__ import annotations

from dataclasses import dataclass

from app.platform.eventlog.keys import Keys

__all__ = ["SummaryKeys"]


@dataclass(frozen=True, slots=True)
class SummaryKeys:
    keys: Keys

    def cooldown(self, partition: int, user_id: str) -> str:
        """Until when (ms) the user's next summary waits: at most one per window."""
        return self.keys.key(partition, f"summary:cooldown:{user_id}")

    def input_hash(self, partition: int, user_id: str) -> str:
        """The input hash of the user's latest summary (read before PostgreSQL has it)."""
        return self.keys.key(partition, f"summary:hash:{user_id}")

    def deferred(self, partition: int) -> str:
        """ZSET user id -> when a coalesced trigger becomes a SummaryRequested."""
        return self.keys.key(partition, "summary:deferred")
