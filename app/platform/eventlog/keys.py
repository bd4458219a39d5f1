"""Redis key names of the event log. Every key one atomic step touches shares its partition's
hash tag, so a step stays in one cluster slot.

The platform's own keys are here (stream, dedupe, dead letters, retry schedule, last error).
A consumer's keys live next to that consumer, built with ``key(partition, suffix)`` on the
same tag; the conversation context the ingress writes is in ``conversation_keys``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from app.platform.settings import Settings

__all__ = ["Keys"]


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str
    partitions: int
    # Every partition's tag, built once: the ingress names five keys per message.
    _tags: tuple[str, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tags", tuple(
            f"{self.prefix}:{{p{partition}}}" for partition in range(self.partitions)))

    @classmethod
    def from_settings(cls, settings: Settings) -> Keys:
        """The deployment's keys: ``MECOVE_KEY_PREFIX`` and ``MECOVE_PARTITIONS``."""
        return cls(settings.key_prefix, settings.partitions)

    def partition_of(self, user_id: str) -> int:
        """A user's events always go to the same partition (stable across processes)."""
        return zlib.crc32(user_id.encode()) % self.partitions

    def tag(self, partition: int) -> str:
        """``<prefix>:{p<partition>}``: the hash tag every key of the partition starts with."""
        if 0 <= partition < self.partitions:
            return self._tags[partition]
        return f"{self.prefix}:{{p{partition}}}"

    def key(self, partition: int, suffix: str) -> str:
        """``<tag>:<suffix>``: a key in the partition's slot."""
        if 0 <= partition < self.partitions:
            return f"{self._tags[partition]}:{suffix}"
        return f"{self.tag(partition)}:{suffix}"

    def stream(self, partition: int) -> str:
        return self.key(partition, "events")

    def streams(self) -> list[str]:
        return [self.stream(p) for p in range(self.partitions)]

    def dedupe(self, partition: int, channel: str, user_key: str, wamid: str) -> str:
        # ``key``'s name built as one string, not two: the ingress names one per message.
        return f"{self.tag(partition)}:dedupe:{channel}:{user_key}:{wamid}"

    def dead_letters(self, partition: int) -> str:
        return self.key(partition, "dlq")

    def retry_schedule(self, partition: int, group: str) -> str:
        """ZSET of entry ids waiting for their next attempt, score = due time in ms."""
        return self.key(partition, f"retry:{group}")

    def last_error(self, partition: int, group: str) -> str:
        """Hash entry id -> last error of a failed attempt."""
        return self.key(partition, f"errors:{group}")

    def pattern(self) -> str:
        return f"{self.prefix}:*"
