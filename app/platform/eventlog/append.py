"""Appending events. A received message is one atomic Redis step (a Lua script)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence

from redis.asyncio import Redis

from app.platform.eventlog.keys import Keys
from schema.events import Event, MessageReceived, ReplyFailed, ReplySent, encode_event

RECENT_KEPT = 20
MAX_COALESCED = 64  # deliveries sharing one script call

# KEYS: stream, then per message: dedupe, tracking zset, recent list, turn hash.
# ARGV: dedupe ttl s, window ms, context ttl s, recent kept, then per message:
#       type, version, event id, time, body, tracking score, message id, text, received_at.
# Returns, per message, the new entry id or "" when the message is a duplicate.
APPEND_MESSAGES_LUA = """
local dedupe_ttl = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local context_ttl = tonumber(ARGV[3])
local kept = tonumber(ARGV[4])
local results = {}
local n = (#KEYS - 1) / 4
for i = 0, n - 1 do
  local k = 2 + i * 4
  local a = 5 + i * 9
  if redis.call('SET', KEYS[k], '1', 'NX', 'EX', dedupe_ttl) then
    local id = redis.call('XADD', KEYS[1], '*', 'type', ARGV[a], 'v', ARGV[a + 1],
      'id', ARGV[a + 2], 'at', ARGV[a + 3], 'body', ARGV[a + 4])
    local received = tonumber(ARGV[a + 8])
    redis.call('ZADD', KEYS[k + 1], ARGV[a + 5], ARGV[a + 6])
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 1], '-inf', '(' .. (received - window))
    redis.call('PEXPIRE', KEYS[k + 1], window * 2)
    redis.call('RPUSH', KEYS[k + 2], ARGV[a + 6])
    redis.call('LTRIM', KEYS[k + 2], -kept, -1)
    redis.call('EXPIRE', KEYS[k + 2], context_ttl)
    redis.call('HSET', KEYS[k + 3], 't', ARGV[a + 7])
    redis.call('EXPIRE', KEYS[k + 3], context_ttl)
    results[i + 1] = id
  else
    results[i + 1] = ''
  end
end
return results
"""

# KEYS: stream, reply outcome, turn hash. ARGV: outcome, reply text (or ""), context ttl s,
#       dedupe ttl s, type, version, event id, time, body.
# Records the outcome and appends the event only once per message; returns the entry id or "".
RECORD_REPLY_LUA = """
local current = redis.call('GET', KEYS[2])
if current and (string.sub(current, 1, 5) == 'sent:' or current == 'failed') then
  return ''
end
redis.call('SET', KEYS[2], ARGV[1], 'EX', tonumber(ARGV[4]))
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[3], 'r', ARGV[2])
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[3]))
end
return redis.call('XADD', KEYS[1], '*', 'type', ARGV[5], 'v', ARGV[6], 'id', ARGV[7],
  'at', ARGV[8], 'body', ARGV[9])
"""


class EventLog:
    """Append to and read the partitioned event log."""

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
        self._dedupe_ttl_s = dedupe_ttl_days * 86_400
        self._window_ms = tracking_window_ms
        self._context_ttl_s = context_ttl_seconds
        self._append_messages = redis.register_script(APPEND_MESSAGES_LUA)
        self._pending: list[tuple[list[MessageReceived], asyncio.Future[list[str | None]]]] = []
        self._flush_scheduled = False
        self._flushes: set[asyncio.Future[None]] = set()
        self._record_reply = redis.register_script(RECORD_REPLY_LUA)

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
                fields = encode_event(event)
                keys += [
                    self.keys.dedupe(
                        partition, event.channel, event.channel_user_key, event.source_message_id
                    ),
                    self.keys.tracking(partition, event.user_id),
                    self.keys.recent(partition, event.user_id),
                    self.keys.turn(partition, event.message_id),
                ]
                args += [
                    fields[b"type"],
                    fields[b"v"],
                    fields[b"id"],
                    fields[b"at"],
                    fields[b"body"],
                    repr(event.tracking_score),
                    event.message_id,
                    event.text,
                    event.received_at,
                ]
            ids = await self._append_messages(keys=keys, args=args)
            for index, entry_id in zip(indexes, ids, strict=True):
                text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                results[index] = text or None
        return results

    async def append(self, event: Event, *, user_id: str) -> str:
        """Append one event to its user's partition; returns the entry id."""
        partition = self.keys.partition_of(user_id)
        entry_id = await self.redis.xadd(self.keys.stream(partition), encode_event(event))
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    async def record_reply(self, event: ReplySent | ReplyFailed) -> str | None:
        """Record a reply's outcome and append its event, once per message.

        Returns the entry id, or None when an outcome was already recorded.
        """
        partition = self.keys.partition_of(event.user_id)
        if isinstance(event, ReplySent):
            outcome = f"sent:{event.outbound_message_id or 'dry-run'}"
            reply_text = event.reply_text
        else:
            outcome, reply_text = "failed", ""
        fields = encode_event(event)
        entry_id = await self._record_reply(
            keys=[
                self.keys.stream(partition),
                self.keys.reply_outcome(partition, event.message_id),
                self.keys.turn(partition, event.message_id),
            ],
            args=[
                outcome,
                reply_text,
                self._context_ttl_s,
                self._dedupe_ttl_s,
                fields[b"type"],
                fields[b"v"],
                fields[b"id"],
                fields[b"at"],
                fields[b"body"],
            ],
        )
        text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        return text or None
