"""Bursts from one user become few summaries: at most one per user per window, and the last
trigger is never lost.

A trigger claims the user's window with one Lua step. If the window is open, the trigger is
folded into a deferred request (a ZSET entry, due when the window ends); a sweeper turns due
entries into SummaryRequested events in the log, so the summary that follows covers them.
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from app.platform.eventlog.entries import ENTRY_LUA, as_text, entry_values
from app.platform.eventlog.keys import Keys
from app.platform.eventlog.lua import script
from consumers.summarizer.summary_keys import SummaryKeys
from schema.events import SummaryRequested

__all__ = ["CLAIM_WINDOW_LUA", "EMIT_DUE_LUA", "SummaryCoalescer"]

# KEYS: cooldown, deferred zset. ARGV: now ms, window ms, user id.
# Returns 1 when this trigger may summarize now, 0 when it was deferred.
CLAIM_WINDOW_LUA = script("""
local cooldown_key = next_key()
local deferred_key = next_key()
local now_ms = tonumber(next_arg())
local window_ms = tonumber(next_arg())
local user_id = next_arg()
local window_ends_ms = tonumber(redis.call('GET', cooldown_key) or '0')
if window_ends_ms > now_ms then
  redis.call('ZADD', deferred_key, 'NX', window_ends_ms, user_id)
  return 0
end
redis.call('SET', cooldown_key, now_ms + window_ms, 'PX', window_ms * 10)
return 1
""")

# KEYS: deferred zset, stream. ARGV: now ms, then per user: user id, the entry values.
# Moves each due user from the ZSET to a SummaryRequested entry in one step (nothing lost).
EMIT_DUE_LUA = script(ENTRY_LUA, """
local deferred_key = next_key()
local stream_key = next_key()
local now_ms = tonumber(next_arg())
local emitted = 0
while has_more_args() do
  local user_id = next_arg()
  local event = next_event()
  local due_ms = redis.call('ZSCORE', deferred_key, user_id)
  if due_ms and tonumber(due_ms) <= now_ms then
    redis.call('ZREM', deferred_key, user_id)
    xadd_event(stream_key, event)
    emitted = emitted + 1
  end
end
return emitted
""")


class SummaryCoalescer:
    def __init__(self, redis: Redis, keys: Keys, window_ms: int) -> None:
        self.redis = redis
        self.keys = keys
        self.summary_keys = SummaryKeys(keys)
        self.window_ms = window_ms
        self._claim = redis.register_script(CLAIM_WINDOW_LUA)
        self._emit_due = redis.register_script(EMIT_DUE_LUA)

    async def claim(self, user_id: str, now_ms: int) -> bool:
        """True: summarize now. False: deferred to the end of the user's window."""
        partition = self.keys.partition_of(user_id)
        allowed = await self._claim(
            keys=[self.summary_keys.cooldown(partition, user_id),
                  self.summary_keys.deferred(partition)],
            args=[now_ms, self.window_ms, user_id],
        )
        return bool(allowed)

    async def release(self, user_id: str) -> None:
        """Give the window back (the summary was not made, e.g. to be retried)."""
        partition = self.keys.partition_of(user_id)
        await self.redis.delete(self.summary_keys.cooldown(partition, user_id))

    async def emit_due(self, partition: int, now_ms: int, limit: int = 100) -> int:
        """Turn due deferred triggers into SummaryRequested events; returns how many."""
        deferred = self.summary_keys.deferred(partition)
        due = await self.redis.zrangebyscore(deferred, "-inf", now_ms, start=0, num=limit)
        if not due:
            return 0
        args: list[str | bytes | int] = [now_ms]
        for raw in due:
            user_id = as_text(raw)
            args += [user_id, *entry_values(SummaryRequested(
                event_id=str(uuid.uuid4()), occurred_at=now_ms, user_id=user_id))]
        return int(await self._emit_due(keys=[deferred, self.keys.stream(partition)], args=args))
