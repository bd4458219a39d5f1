"""The reply outcome of one message: the replier's record of whether its reply went out.

One Redis string per message (``<tag>:reply:<message id>``) holds one of three states:

- ``sending:<consumer>:<ms>``: a replier took the message and is calling the Graph API;
- ``sent:<wamid>`` (``sent:dry-run`` without WhatsApp credentials): the reply went out;
- ``failed``: the replier gave up on the message.

``sent:`` and ``failed`` are final: nothing more happens to that message's reply. Turning a
state final and appending its event (ReplySent / ReplyFailed) is one Lua step, so "recorded"
and "the event exists" cannot disagree (docs/decisions/0003-reply-at-most-once.md).

With ``MECOVE_REDIS_MIN_REPLICAS`` k > 0, taking a message and recording its outcome return
only once k replicas have the write (``DurableWrites``): a failover can then never lose the
``sending:`` of a reply that went out, so no redelivery sends it again. A take that k replicas
did not confirm is released and raises ``ReplicaShortfall``: the replier must not send.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio.client import Pipeline

from app.platform.eventlog.append import STALE_KEY, content_keys_for
from app.platform.eventlog.content_crypto import erase_content, seal_event, sealed_key_id
from app.platform.eventlog.content_keys import KEY_IS_CURRENT_LUA, ContentKeys
from app.platform.eventlog.conversation_keys import ConversationKeys
from app.platform.eventlog.entries import ENTRY_LUA, as_text, entry_values
from app.platform.eventlog.keys import Keys
from app.platform.eventlog.lua import script
from app.platform.redis_client import DurableWrites, RedisClient, ReplicaShortfall
from app.platform.settings import Settings
from schema.events import ReplyFailed, ReplySent

__all__ = [
    "FAILED",
    "RECORD_REPLY_LUA",
    "ReplyOutcomes",
    "is_final",
    "is_sent",
    "sending_state",
    "sent_state",
]

SENDING_PREFIX = "sending:"
SENT_PREFIX = "sent:"
FAILED = "failed"
DRY_RUN_WAMID = "dry-run"


def sending_state(consumer_name: str, now_ms: int) -> str:
    """The state a replier writes before it calls the Graph API."""
    return f"{SENDING_PREFIX}{consumer_name}:{now_ms}"


def sent_state(outbound_message_id: str | None) -> str:
    """The state of a reply that went out (Meta's wamid; ``dry-run`` when none was sent)."""
    return f"{SENT_PREFIX}{outbound_message_id or DRY_RUN_WAMID}"


def is_sent(state: str) -> bool:
    return state.startswith(SENT_PREFIX)


def is_final(state: str) -> bool:
    """True for ``sent:…`` and ``failed``: the message's reply is settled."""
    return is_sent(state) or state == FAILED


# The same test as ``is_final``, for the Lua step that records an outcome.
IS_FINAL_LUA = f"""
local function is_final(state)
  return string.sub(state, 1, {len(SENT_PREFIX)}) == '{SENT_PREFIX}' or state == '{FAILED}'
end
"""

# KEYS: stream, reply outcome, turn hash, the user's content key.
# ARGV: final state, reply text ("" for none), context ttl s, outcome ttl s, key id ("" for
#       plaintext), the entry values.
# Records the final state and appends the event only once per message; returns the entry id,
# "" when the message's outcome was already final, or STALE_KEY when the reply was sealed with
# a key destroyed meanwhile (nothing recorded).
RECORD_REPLY_LUA = script(ENTRY_LUA, IS_FINAL_LUA, KEY_IS_CURRENT_LUA, """
local stream_key = next_key()
local outcome_key = next_key()
local turn_key = next_key()
local content_key = next_key()
local final_state = next_arg()
local reply_text = next_arg()
local context_ttl_s = tonumber(next_arg())
local outcome_ttl_s = tonumber(next_arg())
local key_id = next_arg()
local event = next_event()
local current = redis.call('GET', outcome_key)
if current and is_final(current) then
  return ''
end
if not key_is_current(content_key, key_id) then
  return '""" + STALE_KEY + """'
end
redis.call('SET', outcome_key, final_state, 'EX', outcome_ttl_s)
if reply_text ~= '' then
  redis.call('HSET', turn_key, 'r', reply_text)
  redis.call('EXPIRE', turn_key, context_ttl_s)
end
return xadd_event(stream_key, event)
""")


class ReplyOutcomes:
    """Read, take, release and record the reply outcome of messages."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        *,
        outcome_ttl_s: int = 8 * 86_400,
        context_ttl_s: int = 86_400,
        content: ContentKeys | None = None,
        min_replicas: int = 0,
        wait_timeout_ms: int = 500,
    ) -> None:
        self.redis = redis
        self.writes = DurableWrites(redis, min_replicas=min_replicas,
                                    wait_timeout_ms=wait_timeout_ms)
        self.keys = keys
        self.content = content  # None: the reply text is recorded as plaintext
        self.conversation = ConversationKeys(keys)
        self.outcome_ttl_s = outcome_ttl_s
        self.context_ttl_s = context_ttl_s
        self._record = redis.register_script(RECORD_REPLY_LUA)

    @classmethod
    def from_settings(cls, settings: Settings, redis: RedisClient, *,
                      content: ContentKeys | None = None) -> ReplyOutcomes:
        """Outcomes kept as long as dedupe keys (a redelivery within that time is caught),
        confirmed on ``MECOVE_REDIS_MIN_REPLICAS`` replicas. ``content``: the process's key
        store (shared with the conversation store, so a reply's key is the one its message
        was just opened with, from the same cache); None makes one from ``settings``."""
        return cls(redis, Keys.from_settings(settings),
                   outcome_ttl_s=settings.dedupe_ttl_days * 86_400,
                   context_ttl_s=settings.context_ttl_seconds,
                   content=content if content is not None else content_keys_for(settings, redis),
                   min_replicas=settings.redis_min_replicas,
                   wait_timeout_ms=settings.redis_wait_timeout_ms)

    async def aclose(self) -> None:
        """Close the connections opened for ``WAIT`` (the client passed in stays open)."""
        await self.writes.aclose()

    def key(self, user_id: str, message_id: str) -> str:
        """``<tag>:reply:<message id>`` in the user's partition."""
        return self.keys.key(self.keys.partition_of(user_id), f"reply:{message_id}")

    async def read(self, key: str) -> str | None:
        """The message's state, or None when no replier took it yet."""
        return as_text(await self.redis.get(key))

    def queue_read(self, pipe: Pipeline, key: str) -> None:
        """Add ``read`` of ``key`` to ``pipe``; pass its answer through ``as_text``."""
        pipe.get(key)

    async def take(self, key: str, state: str, *,
                   reads: Callable[[Pipeline], None] | None = None) -> tuple[list[Any], bool]:
        """Write ``state`` (``sending:…``) unless the message has a state (``SET NX``), in one
        round trip with the commands ``reads`` queues (same slot); returns their answers and
        whether ``state`` was written.

        With replicas required, ``state`` counts as taken only once they have it: a take they
        did not confirm in time is released (nothing will be sent) and ReplicaShortfall
        raised. Should that release fail too, ``sending:`` stays and the next attempt
        dead-letters the message as in doubt: never a double send."""

        async def queue(pipe: Pipeline) -> None:
            if reads is not None:
                reads(pipe)
            pipe.set(key, state, nx=True, ex=self.outcome_ttl_s)

        try:
            *answers, taken = await self.writes.pipeline(key, queue)
        except ReplicaShortfall:
            await self.release(key, state)
            raise
        return answers, bool(taken)

    async def release(self, key: str, state: str) -> None:
        """Remove ``state`` taken by ``take`` (nothing was sent), unless it changed since."""
        if await self.read(key) == state:
            await self.redis.delete(key)

    async def clear(self, key: str) -> None:
        """Forget the message's state (an operator chose to retry it)."""
        await self.redis.delete(key)

    async def record(self, event: ReplySent | ReplyFailed, *,
                     message_text: str | None = None) -> str | None:
        """Make the outcome final and append ``event``, once per message.

        Returns the new entry id, or None when the outcome was already final. The reply is
        sealed with the key that sealed its message (``message_text`` as the event holds it):
        a reply to a message whose key was destroyed meanwhile is recorded with its text erased.
        """
        key = None
        if self.content is not None and isinstance(event, ReplySent):
            key_id = sealed_key_id(message_text)
            if key_id is None:  # a message written before sealing: the user's current key
                key = await self.content.for_writing(event.user_id)
            else:
                key = (await self.content.keyring((), also={key_id: event.user_id})).get(key_id)
            if key is None:
                return await self._record_sealed(erase_content(event), "") or None
        entry_id = await self._record_sealed(event if key is None else seal_event(event, key),
                                             "" if key is None else key.key_id)
        if entry_id == STALE_KEY:
            assert self.content is not None
            self.content.drop(event.user_id)
            entry_id = await self._record_sealed(erase_content(event), "")
        return entry_id or None

    async def _record_sealed(self, event: ReplySent | ReplyFailed, key_id: str) -> str:
        if isinstance(event, ReplySent):
            final_state, reply_text = sent_state(event.outbound_message_id), event.reply_text
        else:
            final_state, reply_text = FAILED, ""
        partition = self.keys.partition_of(event.user_id)
        stream = self.keys.stream(partition)
        entry_id = await self.writes.write(stream, lambda client: self._record(
            client=client,
            keys=[
                stream,
                self.key(event.user_id, event.message_id),
                self.conversation.turn(partition, event.message_id),
                self.content.key_hash(event.user_id) if self.content is not None
                else self.keys.key(partition, "contentkey:none"),
            ],
            args=[final_state, reply_text, self.context_ttl_s, self.outcome_ttl_s, key_id,
                  *entry_values(event)],
        ))
        return as_text(entry_id)
