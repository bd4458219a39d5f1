"""Appending events to the partitioned log.

``append`` writes any event to its user's partition. ``append_messages`` is the ingress's
atomic step: per received message, one Lua call checks the dedupe key, appends the
MessageReceived and keeps the user's conversation context (``conversation_keys``) together.
Consumers that record more than an entry in one step (the replier's outcome, the summarizer's
deferred triggers) compose their own scripts from ``lua`` and ``entries``.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from redis.asyncio import Redis

from app.platform.eventlog.conversation_keys import ConversationKeys
from app.platform.eventlog.entries import ENTRY_LUA, as_text, encode_event, entry_values
from app.platform.eventlog.keys import Keys
from app.platform.eventlog.lua import script
from app.platform.settings import Settings
from schema.events import Event, MessageReceived

__all__ = ["APPEND_MESSAGES_LUA", "EventLog"]

RECENT_KEPT = 20
MAX_COALESCED = 64  # deliveries sharing one script call

# KEYS: stream, then per message: dedupe, tracking zset, recent list, turn hash.
# ARGV: dedupe ttl s, tracking window ms, context ttl s, recent kept, then per message:
#       the entry values, tracking score, message id, text, received at ms.
# Returns, per message, the new entry id or "" when the message is a duplicate.
APPEND_MESSAGES_LUA = script(ENTRY_LUA, """
local stream_key = next_key()
local dedupe_ttl_s = tonumber(next_arg())
local tracking_window_ms = tonumber(next_arg())
local context_ttl_s = tonumber(next_arg())
local recent_kept = tonumber(next_arg())
local entry_ids = {}
while has_more_keys() do
  local dedupe_key = next_key()
  local tracking_key = next_key()
  local recent_key = next_key()
  local turn_key = next_key()
  local event = next_event()
  local tracking_score = next_arg()
  local message_id = next_arg()
  local text = next_arg()
  local received_at_ms = tonumber(next_arg())
  local entry_id = ''
  if redis.call('SET', dedupe_key, '1', 'NX', 'EX', dedupe_ttl_s) then
    entry_id = xadd_event(stream_key, event)
    redis.call('ZADD', tracking_key, tracking_score, message_id)
    redis.call('ZREMRANGEBYSCORE', tracking_key, '-inf',
      '(' .. (received_at_ms - tracking_window_ms))
    redis.call('PEXPIRE', tracking_key, tracking_window_ms * 2)
    redis.call('RPUSH', recent_key, message_id)
    redis.call('LTRIM', recent_key, -recent_kept, -1)
    redis.call('EXPIRE', recent_key, context_ttl_s)
    redis.call('HSET', turn_key, 't', text)
    redis.call('EXPIRE', turn_key, context_ttl_s)
  end
  entry_ids[#entry_ids + 1] = entry_id
end
return entry_ids
""")


class EventLog:
    """Appends events to the partitioned log (one shared instance per process)."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        dedupe_ttl_days: int = 8,
        tracking_window_ms: int = 60_000,
        context_ttl_seconds: int = 86_400,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.conversation = ConversationKeys(keys)
        self._dedupe_ttl_s = dedupe_ttl_days * 86_400
        self._window_ms = tracking_window_ms
        self._context_ttl_s = context_ttl_seconds
        self._append_messages = redis.register_script(APPEND_MESSAGES_LUA)
        self._pending: list[tuple[list[MessageReceived], asyncio.Future[list[str | None]]]] = []
        self._flush_scheduled = False
        self._flushes: set[asyncio.Future[None]] = set()

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis) -> EventLog:
        """The deployment's event log: its keys, dedupe TTL, tracking window and context TTL."""
        return cls(
            redis,
            Keys.from_settings(settings),
            dedupe_ttl_days=settings.dedupe_ttl_days,
            tracking_window_ms=settings.tracking_window_ms,
            context_ttl_seconds=settings.context_ttl_seconds,
        )

    async def append_messages(self, events: Sequence[MessageReceived]) -> list[str | None]:
        """Append received messages; returns, in input order, each new entry id, or None for a
        duplicate. Deliveries that arrive in the same event-loop turn share one script call
        per partition (one round trip for many webhooks); each caller still gets its answer
        only once its own messages are in the log, and every message stays atomic on its own.
        """
        if not events:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[str | None]] = loop.create_future()
        self._pending.append((list(events), future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._start_flush)
        return await future

    def _start_flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending[:MAX_COALESCED], self._pending[MAX_COALESCED:]
        if self._pending:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._start_flush)
        task = asyncio.ensure_future(self._flush(batch))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(
        self, batch: list[tuple[list[MessageReceived], asyncio.Future[list[str | None]]]]
    ) -> None:
        try:
            ids = await self._append_now([e for events, _ in batch for e in events])
        except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        offset = 0
        for events, future in batch:
            if not future.done():
                future.set_result(ids[offset:offset + len(events)])
            offset += len(events)

    async def _append_now(self, events: Sequence[MessageReceived]) -> list[str | None]:
        """One atomic script call per partition touched."""
        by_partition: dict[int, list[int]] = defaultdict(list)
        for index, event in enumerate(events):
            by_partition[self.keys.partition_of(event.user_id)].append(index)
        results: list[str | None] = [None] * len(events)
        for partition, indexes in by_partition.items():
            keys: list[str] = [self.keys.stream(partition)]
            args: list[str | bytes | int | float] = [
                self._dedupe_ttl_s,
                self._window_ms,
                self._context_ttl_s,
                RECENT_KEPT,
            ]
            for index in indexes:
                event = events[index]
                keys += [
                    self.keys.dedupe(
                        partition, event.channel, event.channel_user_key, event.source_message_id
                    ),
                    self.conversation.tracking(partition, event.user_id),
                    self.conversation.recent(partition, event.user_id),
                    self.conversation.turn(partition, event.message_id),
                ]
                args += [
                    *entry_values(event),
                    repr(event.tracking_score),
                    event.message_id,
                    event.text,
                    event.received_at,
                ]
            ids = await self._append_messages(keys=keys, args=args)
            for index, entry_id in zip(indexes, ids, strict=True):
                results[index] = as_text(entry_id) or None
        return results

    async def append(self, event: Event, *, user_id: str) -> str:
        """Append one event to its user's partition; returns the entry id."""
        partition = self.keys.partition_of(user_id)
        return as_text(await self.redis.xadd(self.keys.stream(partition), encode_event(event)))
