"""Bursts from one user become few summaries: at most one per user per window, and the last
trigger is never lost.

A trigger claims the user's window with one Lua step. If the window is open, the trigger is
folded into a deferred request (a ZSET entry, due when the window ends); a sweeper turns due
entries into SummaryRequested events in the log, so the summary that follows covers them.
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from app.platform.eventlog.keys import Keys
from schema.events import SummaryRequested, encode_event

# KEYS: cooldown, deferred zset. ARGV: now ms, window ms, user id.
# Returns 1 when this trigger may summarize now, 0 when it was deferred.
CLAIM_WINDOW_LUA = """
local now = tonumber(ARGV[1])
local until_ms = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > now then
  redis.call('ZADD', KEYS[2], 'NX', until_ms, ARGV[3])
  return 0
end
redis.call('SET', KEYS[1], now + tonumber(ARGV[2]), 'PX', tonumber(ARGV[2]) * 10)
return 1
"""

# KEYS: deferred zset, stream. ARGV: now ms, then per user: user id, type, v, id, at, body.
# Moves each due user from the ZSET to a SummaryRequested entry in one step (nothing lost).
EMIT_DUE_LUA = """
local now = tonumber(ARGV[1])
local emitted = 0
for i = 2, #ARGV, 6 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= now then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('XADD', KEYS[2], '*', 'type', ARGV[i + 1], 'v', ARGV[i + 2], 'id', ARGV[i + 3],
      'at', ARGV[i + 4], 'body', ARGV[i + 5])
    emitted = emitted + 1
  end
end
return emitted
"""


class SummaryCoalescer:
    def __init__(self, redis: Redis, keys: Keys, window_ms: int) -> None:
        self.redis = redis
        self.keys = keys
        self.window_ms = window_ms
        self._claim = redis.register_script(CLAIM_WINDOW_LUA)
        self._emit_due = redis.register_script(EMIT_DUE_LUA)

    async def claim(self, user_id: str, now_ms: int) -> bool:
        """True: summarize now. False: deferred to the end of the user's window."""
        partition = self.keys.partition_of(user_id)
        allowed = await self._claim(
            keys=[self.keys.summary_cooldown(partition, user_id),
                  self.keys.summary_deferred(partition)],
            args=[now_ms, self.window_ms, user_id],
        )
        return bool(allowed)

    async def release(self, user_id: str) -> None:
        """Give the window back (the summary was not made, e.g. to be retried)."""
        partition = self.keys.partition_of(user_id)
        await self.redis.delete(self.keys.summary_cooldown(partition, user_id))

    async def emit_due(self, partition: int, now_ms: int, limit: int = 100) -> int:
        """Turn due deferred triggers into SummaryRequested events; returns how many."""
        deferred = self.keys.summary_deferred(partition)
        due = await self.redis.zrangebyscore(deferred, "-inf", now_ms, start=0, num=limit)
        if not due:
            return 0
        args: list[str | bytes | int] = [now_ms]
        for raw in due:
            user_id = raw.decode() if isinstance(raw, bytes) else raw
            fields = encode_event(SummaryRequested(
                event_id=str(uuid.uuid4()), occurred_at=now_ms, user_id=user_id))
            args += [user_id, fields[b"type"], fields[b"v"], fields[b"id"], fields[b"at"],
                     fields[b"body"]]
        return int(await self._emit_due(keys=[deferred, self.keys.stream(partition)], args=args))
