"""Redis key names. Every key one atomic step touches shares its partition's hash tag."""

from __future__ import annotations

import zlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str
    partitions: int

    def partition_of(self, user_id: str) -> int:
        """A user's events always go to the same partition (stable across processes)."""
        return zlib.crc32(user_id.encode()) % self.partitions

    def _tag(self, partition: int) -> str:
        return f"{self.prefix}:{{p{partition}}}"

    def stream(self, partition: int) -> str:
        return f"{self._tag(partition)}:events"

    def streams(self) -> list[str]:
        return [self.stream(p) for p in range(self.partitions)]

    def dedupe(self, partition: int, channel: str, user_key: str, wamid: str) -> str:
        return f"{self._tag(partition)}:dedupe:{channel}:{user_key}:{wamid}"

    def tracking(self, partition: int, user_id: str) -> str:
        """The seed's ``messages:{userId}`` ZSET: score = server ms, member = message id."""
        return f"{self._tag(partition)}:messages:{user_id}"

    def recent(self, partition: int, user_id: str) -> str:
        """The user's latest message ids, oldest first (conversation context)."""
        return f"{self._tag(partition)}:recent:{user_id}"

    def turn(self, partition: int, message_id: str) -> str:
        """Hash of one message's text (``t``) and reply (``r``)."""
        return f"{self._tag(partition)}:turn:{message_id}"

    def reply_outcome(self, partition: int, message_id: str) -> str:
        """``sending:<consumer>``, ``sent:<wamid>`` or ``failed`` for one message's reply."""
        return f"{self._tag(partition)}:reply:{message_id}"

    def dead_letters(self, partition: int) -> str:
        return f"{self._tag(partition)}:dlq"

    def retry_schedule(self, partition: int, group: str) -> str:
        """ZSET of entry ids waiting for their next attempt, score = due time in ms."""
        return f"{self._tag(partition)}:retry:{group}"

    def last_error(self, partition: int, group: str) -> str:
        """Hash entry id -> last error of a failed attempt."""
        return f"{self._tag(partition)}:errors:{group}"

    def summary_cooldown(self, partition: int, user_id: str) -> str:
        """Until when (ms) the user's next summary waits: at most one per window."""
        return f"{self._tag(partition)}:summary:cooldown:{user_id}"

    def summary_hash(self, partition: int, user_id: str) -> str:
        """The input hash of the user's latest summary (read before PostgreSQL has it)."""
        return f"{self._tag(partition)}:summary:hash:{user_id}"

    def summary_deferred(self, partition: int) -> str:
        """ZSET user id -> when a coalesced trigger becomes a SummaryRequested."""
        return f"{self._tag(partition)}:summary:deferred"

    def pattern(self) -> str:
        return f"{self.prefix}:*"
