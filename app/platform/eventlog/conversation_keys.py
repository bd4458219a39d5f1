"""Keys of a user's conversation context: message order, recent ids and each turn's text.

They belong to the platform, not to the replier that reads them, because the ingress writes
them in the same atomic Lua step that appends the MessageReceived (``append.EventLog``): a
reply must never see a message in the log without its context, and the platform imports no
consumer. The replier adds each turn's reply text (``r``) when it records ReplySent.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.platform.eventlog.keys import Keys

__all__ = ["ConversationKeys"]

# What follows the partition's tag in each key (``of_message`` names all three at once).
_TRACKING, _RECENT, _TURN = "messages", "recent", "turn"


@dataclass(frozen=True, slots=True)
class ConversationKeys:
    keys: Keys

    def tracking(self, partition: int, user_id: str) -> str:
        """ZSET of the user's messages of the tracking window: score = server ms, member = id."""
        return self.keys.key(partition, f"{_TRACKING}:{user_id}")

    def recent(self, partition: int, user_id: str) -> str:
        """List of the user's latest message ids, oldest first."""
        return self.keys.key(partition, f"{_RECENT}:{user_id}")

    def turn(self, partition: int, message_id: str) -> str:
        """Hash of one message's text (``t``) and reply (``r``)."""
        return self.keys.key(partition, f"{_TURN}:{message_id}")

    def of_message(self, partition: int, user_id: str, message_id: str) -> tuple[str, str, str]:
        """``tracking``, ``recent`` and ``turn`` of one received message, the partition's tag
        looked up once (the ingress names all three per message)."""
        tag = self.keys.tag(partition)
        return (f"{tag}:{_TRACKING}:{user_id}", f"{tag}:{_RECENT}:{user_id}",
                f"{tag}:{_TURN}:{message_id}")
