"""Appending events to the partitioned log.

``append`` writes any event to its user's partition. ``append_messages`` is the ingress's
atomic step: per received message, one Lua call checks the dedupe key, appends the
MessageReceived and keeps the user's conversation context (``conversation_keys``) together.
Consumers that record more than an entry in one step (the replier's outcome, the summarizer's
deferred triggers) compose their own scripts from ``lua`` and ``entries``.

With a master key (``content``), content fields are sealed with the user's data key before
they leave the process (``content_crypto``), and each sealing script checks, in the same
atomic step, that the key is still the user's: a message sealed with a key ``mecove forget``
destroyed is sealed again with the user's new key; any other event loses its content.

With ``min_replicas`` k > 0 every append is followed by ``WAIT k timeout`` on the connection
that wrote it, on the master owning the partition, and raises ``ReplicaShortfall`` when fewer
replicas acknowledged it: the ingress then answers 503 and Meta redelivers. A duplicate still
writes (it renews its dedupe key), so its ``WAIT`` also covers the first, unconfirmed copy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from redis.asyncio.client import Pipeline

from app.platform.eventlog.content_crypto import (
    CONTENT_FIELDS,
    DataKey,
    erase_content,
    seal_event,
    seal_message,
)
from app.platform.eventlog.content_keys import (
    KEY_IS_CURRENT_LUA,
    ContentKeys,
    master_keys_for,
)
from app.platform.eventlog.conversation_keys import ConversationKeys
from app.platform.eventlog.entries import (
    ENTRY_LUA,
    as_text,
    encode_event,
    entry_texts,
    entry_values,
)
from app.platform.eventlog.keys import Keys
from app.platform.eventlog.lua import PACKED_ARGS_LUA, packed_args, script
from app.platform.redis_client import DurableWrites, RedisClient
from app.platform.same_turn_batches import SameTurnBatches
from app.platform.settings import Settings
from schema.events import Event, MessageReceived

__all__ = ["APPEND_MESSAGES_LUA", "APPEND_MESSAGE_STEP_LUA", "APPEND_SEALED_LUA", "STALE_KEY",
           "EventLog", "content_keys_for"]

RECENT_KEPT = 20
MAX_COALESCED = 64  # deliveries sharing one script call

STALE_KEY = "!stale"  # what a sealing script answers when the key was destroyed meanwhile

# One received message's atomic step, for scripts that append messages (needs ENTRY_LUA and
# KEY_IS_CURRENT_LUA before it). ``next_append_settings()`` reads the four settings a call's
# messages share (EventLog.append_settings); ``append_message`` reads one message's inputs
# with next_key/next_arg:
# KEYS dedupe, tracking zset, recent list, turn hash, content key;
# ARGV (packed: lua.packed_args) the entry values, tracking score, message id, text,
# received at ms, key id ("" none).
# Returns the new entry id, "" when the message is a duplicate, or STALE_KEY.
APPEND_MESSAGE_STEP_LUA = """
-- Settings stay the strings the commands take: a Lua number given to redis.call is formatted
-- (snprintf) on every call. Numbers only where the step computes (decision 0031).
local function next_append_settings()
  local dedupe_ttl_s = next_arg()
  local tracking_window_ms = tonumber(next_arg())
  local context_ttl_s = next_arg()
  local recent_kept = tonumber(next_arg())
  return {dedupe_ttl_s = dedupe_ttl_s, tracking_window_ms = tracking_window_ms,
          tracking_ttl_ms = tostring(tracking_window_ms * 2), context_ttl_s = context_ttl_s,
          recent_kept = recent_kept, recent_from = tostring(-recent_kept)}
end
-- The tracking trim's bound for a receipt time: formatted once per receipt time of a call
-- (the messages of a delivery, and deliveries of the same millisecond, share it).
local tracking_bounds = {}
local function tracking_bound(received_at_ms, settings)
  local bound = tracking_bounds[received_at_ms]
  if bound == nil then
    bound = '(' .. (received_at_ms - settings.tracking_window_ms)
    tracking_bounds[received_at_ms] = bound
  end
  return bound
end
local function append_message(stream_key, settings)
  local dedupe_key = next_key()
  local tracking_key = next_key()
  local recent_key = next_key()
  local turn_key = next_key()
  local content_key = next_key()
  local event = next_event()
  local tracking_score = next_arg()
  local message_id = next_arg()
  local text = next_arg()
  local received_at_ms = tonumber(next_arg())
  local key_id = next_arg()
  if not key_is_current(content_key, key_id) then
    return '""" + STALE_KEY + """'
  end
  if not redis.call('SET', dedupe_key, '1', 'NX', 'EX', settings.dedupe_ttl_s) then
    -- a write, so a WAIT covers the first copy
    redis.call('EXPIRE', dedupe_key, settings.dedupe_ttl_s)
    return ''
  end
  local entry_id = xadd_event(stream_key, event)
  redis.call('ZADD', tracking_key, tracking_score, message_id)
  redis.call('ZREMRANGEBYSCORE', tracking_key, '-inf', tracking_bound(received_at_ms, settings))
  redis.call('PEXPIRE', tracking_key, settings.tracking_ttl_ms)
  -- Trimmed only when longer than kept (RPUSH answers the length): the same list, one
  -- command less for a user with fewer messages than that (decision 0031).
  if redis.call('RPUSH', recent_key, message_id) > settings.recent_kept then
    redis.call('LTRIM', recent_key, settings.recent_from, '-1')
  end
  redis.call('EXPIRE', recent_key, settings.context_ttl_s)
  redis.call('HSET', turn_key, 't', text)
  redis.call('EXPIRE', turn_key, settings.context_ttl_s)
  return entry_id
end
"""

# KEYS: stream, then per message the keys of APPEND_MESSAGE_STEP_LUA.
# ARGV: dedupe ttl s, tracking window ms, context ttl s, recent kept, then one packed argument
#       (lua.packed_args) holding, per message, the arguments of APPEND_MESSAGE_STEP_LUA.
# Returns, per message, the new entry id, "" when the message is a duplicate, or STALE_KEY.
APPEND_MESSAGES_LUA = script(ENTRY_LUA, KEY_IS_CURRENT_LUA, PACKED_ARGS_LUA,
                             APPEND_MESSAGE_STEP_LUA, """
local stream_key = next_key()
local settings = next_append_settings()
unpack_args()
local entry_ids = {}
while has_more_keys() do
  entry_ids[#entry_ids + 1] = append_message(stream_key, settings)
end
return entry_ids
""")

# KEYS: stream, the user's content key. ARGV: key id, the entry values.
# Returns the new entry id, or STALE_KEY (nothing appended) when the key is not the user's.
APPEND_SEALED_LUA = script(ENTRY_LUA, KEY_IS_CURRENT_LUA, """
local stream_key = next_key()
local content_key = next_key()
local key_id = next_arg()
local event = next_event()
if not key_is_current(content_key, key_id) then
  return '""" + STALE_KEY + """'
end
return xadd_event(stream_key, event)
""")


def content_keys_for(settings: Settings, redis: RedisClient) -> ContentKeys | None:
    """The deployment's key store; None without a master key (content then stays plaintext)."""
    master = master_keys_for(settings.master_key, settings.previous_master_key)
    return None if master is None else ContentKeys(redis, Keys.from_settings(settings), master)


class EventLog:
    """Appends events to the partitioned log (one shared instance per process)."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        *,
        dedupe_ttl_days: int = 8,
        tracking_window_ms: int = 60_000,
        context_ttl_seconds: int = 86_400,
        content: ContentKeys | None = None,
        min_replicas: int = 0,
        wait_timeout_ms: int = 500,
    ) -> None:
        self.redis = redis
        self.min_replicas = min_replicas
        # Shared with the identity links of the same process (app_factory).
        self.writes = DurableWrites(redis, min_replicas=min_replicas,
                                    wait_timeout_ms=wait_timeout_ms)
        self.keys = keys
        self.content = content  # None: content fields are appended as plaintext
        self.conversation = ConversationKeys(keys)
        self._dedupe_ttl_s = dedupe_ttl_days * 86_400
        self._window_ms = tracking_window_ms
        self._context_ttl_s = context_ttl_seconds
        self._append_messages = redis.register_script(APPEND_MESSAGES_LUA)
        self._append_sealed = redis.register_script(APPEND_SEALED_LUA)
        self._batches: SameTurnBatches[MessageReceived, str | None] = SameTurnBatches(
            self._append_now, max_callers=MAX_COALESCED)

    @classmethod
    def from_settings(cls, settings: Settings, redis: RedisClient) -> EventLog:
        """The deployment's event log: its keys, dedupe TTL, tracking window, context TTL and
        the replicas an append must reach (``MECOVE_REDIS_MIN_REPLICAS``)."""
        return cls(
            redis,
            Keys.from_settings(settings),
            dedupe_ttl_days=settings.dedupe_ttl_days,
            tracking_window_ms=settings.tracking_window_ms,
            context_ttl_seconds=settings.context_ttl_seconds,
            content=content_keys_for(settings, redis),
            min_replicas=settings.redis_min_replicas,
            wait_timeout_ms=settings.redis_wait_timeout_ms,
        )

    async def aclose(self) -> None:
        """Close the connections opened for ``WAIT`` (the client passed in stays open)."""
        await self.writes.aclose()

    async def append_messages(self, events: Sequence[MessageReceived]) -> list[str | None]:
        """Append received messages; returns, in input order, each new entry id, or None for a
        duplicate. Deliveries that arrive in the same event-loop turn share one script call
        per partition (one round trip for many webhooks); each caller still gets its answer
        only once its own messages are in the log, and every message stays atomic on its own.
        """
        return await self._batches.submit(events)

    async def _append_now(self, events: Sequence[MessageReceived]) -> list[str | None]:
        """Seal and append; messages whose key was destroyed meanwhile go again, resealed."""
        results = await self._append_sealed_messages(events)
        stale = [i for i, entry_id in enumerate(results) if entry_id == STALE_KEY]
        if stale and self.content is not None:
            for index in stale:
                self.content.drop(events[index].user_id)
            again = await self._append_sealed_messages([events[i] for i in stale])
            for index, entry_id in zip(stale, again, strict=True):
                results[index] = entry_id
        if STALE_KEY in results:
            raise ConnectionError("content keys changed twice during one append; Meta retries")
        return results

    async def _key_for(self, user_id: str) -> DataKey | None:
        return None if self.content is None else await self.content.for_writing(user_id)

    async def _append_sealed_messages(self, events: Sequence[MessageReceived]
                                      ) -> list[str | None]:
        """One atomic script call per partition touched."""
        results: list[str | None] = [None] * len(events)
        for partition, indexes in self.by_partition(events).items():
            stream = self.keys.stream(partition)
            keys: list[str] = [stream]
            values: list[str | int] = []
            for index in indexes:
                await self.add_message_inputs(events[index], partition, keys, values)
            args = [*self.append_settings(), packed_args(values)]
            ids = await self.writes.script(stream, self._append_messages, keys, args)
            for index, entry_id in zip(indexes, ids, strict=True):
                results[index] = as_text(entry_id) or None
        return results

    def by_partition(self, events: Sequence[MessageReceived]) -> dict[int, list[int]]:
        """Partition -> the indexes of ``events`` that go to it, in order."""
        by_partition: dict[int, list[int]] = defaultdict(list)
        for index, event in enumerate(events):
            by_partition[self.keys.partition_of(event.user_id)].append(index)
        return by_partition

    def append_settings(self) -> list[str | bytes | int | float]:
        """The arguments a messages script reads first: dedupe TTL, tracking window, context
        TTL, recent messages kept."""
        return [self._dedupe_ttl_s, self._window_ms, self._context_ttl_s, RECENT_KEPT]

    async def add_message_inputs(self, event: MessageReceived, partition: int, keys: list[str],
                                 values: list[str | int]) -> None:
        """Add the keys and the values to pack (``lua.packed_args``) that
        ``APPEND_MESSAGE_STEP_LUA`` reads for ``event``, its content sealed with its user's
        key."""
        key = None if self.content is None else (
            self.content.cached_for_writing(event.user_id) or await self._key_for(event.user_id))
        self.add_sealed_inputs(event, key, partition, keys, values)

    def cached_key(self, user_id: str) -> DataKey | None | bool:
        """The key ``add_sealed_inputs`` needs for ``user_id``'s events: None without a master
        key, False when it is not cached (``add_message_inputs`` then fetches it)."""
        if self.content is None:
            return None
        return self.content.cached_for_writing(user_id) or False

    def add_sealed_inputs(self, event: MessageReceived, key: DataKey | None, partition: int,
                          keys: list[str], values: list[str | int]) -> None:
        """``add_message_inputs`` with the user's key in hand (no coroutine per message)."""
        sealed = event if key is None else seal_message(event, key)
        user_id = sealed.user_id
        message_id = sealed.message_id
        keys.append(self.keys.dedupe(partition, sealed.channel, sealed.channel_user_key,
                                     sealed.source_message_id))
        keys += self.conversation.of_message(partition, user_id, message_id)
        keys.append(self._content_key(user_id, partition))
        values += entry_texts(sealed)
        values += (
            repr(sealed.tracking_score),
            message_id,
            sealed.text,
            sealed.received_at,
            "" if key is None else key.key_id,
        )

    def _content_key(self, user_id: str, partition: int) -> str:
        return self.content.key_hash(user_id, partition) if self.content is not None else (
            self.keys.key(partition, "contentkey:none"))

    async def append(self, event: Event, *, user_id: str) -> str:
        """Append one event to its user's partition (its content sealed); returns the entry id.

        Content sealed with a key destroyed meanwhile is not sealed again: the event is
        appended with its content erased (it was made from what the person wrote).
        """
        stream = self.keys.stream(self.keys.partition_of(user_id))
        if self.content is None or type(event) not in CONTENT_FIELDS:
            return as_text(await self._xadd(stream, encode_event(event)))
        key = await self.content.for_writing(user_id)
        script_keys = [stream, self.content.key_hash(user_id)]
        script_args = [key.key_id, *entry_values(seal_event(event, key))]
        entry_id = as_text(await self.writes.write(stream, lambda client: self._append_sealed(
            keys=script_keys, args=script_args, client=client)))
        if entry_id == STALE_KEY:
            self.content.drop(user_id)
            entry_id = as_text(await self._xadd(stream, encode_event(erase_content(event))))
        return entry_id

    async def _xadd(self, stream: str, fields: dict[str, Any]) -> Any:
        """XADD ``fields`` to ``stream``, durably (``DurableWrites``); the entry id."""

        async def xadd(client: RedisClient | Pipeline) -> Any:
            return await client.xadd(stream, fields)  # type: ignore[arg-type]

        return await self.writes.write(stream, xadd)
