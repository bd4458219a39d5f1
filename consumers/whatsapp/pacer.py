"""Pacing the replies in Redis, shared by every replier process: per recipient and per number.

Two limiters run the arithmetic of ``pacing_rule`` as Lua (one atomic step each):

* the pair limiter of each recipient (``<tag>:pace:<user>:tat``, in the user's partition);
  a reply it refuses joins the recipient's **line** (a ZSET of message ids scored by log order,
  with the time each started waiting in a hash). Nobody passes an earlier reply still in the
  line, so a user's replies go out in order whichever process or batch handles them;
* the number's throughput limiter (``<tag of partition 0>:pace:global``): admits a send within
  a short wait (the caller sleeps), else refuses it; then the reply joins its line as well.

When Meta still answers "over the limit", ``pair_blocked`` / ``throughput_blocked`` make the
limiter full for a pause and put the reply in its line. A reply that waited in its line longer
than the give-up time is failed by the caller (``waiting_since_ms``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError

from app.platform.clock import now_ms
from app.platform.eventlog.entries import as_text
from app.platform.eventlog.keys import Keys
from app.platform.eventlog.lua import script
from consumers.whatsapp.pacing_rule import PaceRule

__all__ = ["GCRA_LUA", "GLOBAL_LUA", "PAIR_LUA", "PAIR_STEP_LUA", "TAKE_LUA", "TAKE_STEP_LUA",
           "Pacer", "Pacing", "log_order"]

# A waiter this much older than the give-up time belongs to a reply that was lost (dropped,
# trimmed); it stops holding its line.
STALE_MARGIN_MS = 120_000
# A reply behind an earlier one asks again this soon at the earliest.
BEHIND_RETRY_MS = 200
# The longest a send waits inline for the number's throughput limiter before it is deferred.
THROUGHPUT_MAX_WAIT_MS = 1_000
# How long the number pauses after Meta answered a throughput error.
THROUGHPUT_PAUSE_MS = 1_000

# The GCRA step of ``pacing_rule.admit``, optionally storing the new state.
GCRA_LUA = """
local function gcra(tat_key, now, interval, tolerance, max_wait, ttl_ms, consume)
  local start = math.max(tonumber(redis.call('GET', tat_key) or '0'), now)
  local conforms_at = start - tolerance
  if conforms_at - now > max_wait then
    return false, math.ceil(conforms_at - max_wait)
  end
  if consume then
    redis.call('SET', tat_key, string.format('%.3f', start + interval), 'PX', ttl_ms)
  end
  return true, math.max(math.ceil(conforms_at), now)
end
local function join_line(line_key, since_key, member, order, now, ttl_ms)
  redis.call('ZADD', line_key, order, member)
  redis.call('HSETNX', since_key, member, now)
  redis.call('PEXPIRE', line_key, ttl_ms)
  redis.call('PEXPIRE', since_key, ttl_ms)
  return tonumber(redis.call('HGET', since_key, member))
end
"""

# The pair limiter's step: the stale heads of the line dropped, then the GCRA unless an earlier
# reply still waits. Returns true, now when the reply may go; else false, ask-again ms, waiting
# since ms (the reply joined its line).
PAIR_STEP_LUA = """
local function pair_step(tat_key, line_key, since_key, now, interval, tolerance, member, order,
                         stale_ms, ttl_ms, consume, behind_retry_ms)
  while true do
    local head = redis.call('ZRANGE', line_key, 0, 0)[1]
    if not head or head == member then break end
    local since = tonumber(redis.call('HGET', since_key, head) or '0')
    if now - since <= stale_ms then break end
    redis.call('ZREM', line_key, head)
    redis.call('HDEL', since_key, head)
  end
  local head = redis.call('ZRANGE', line_key, 0, 0, 'WITHSCORES')
  local behind = head[1] ~= nil and head[1] ~= member and tonumber(head[2]) < order
  local conforms, at = gcra(tat_key, now, interval, tolerance, 0, ttl_ms,
                            consume and not behind)
  if conforms and not behind then
    if consume then
      -- out of the line; its waiting-since stays (until it expires) in case Meta refuses it
      redis.call('ZREM', line_key, member)
    end
    return true, now, 0
  end
  local since = join_line(line_key, since_key, member, order, now, ttl_ms)
  return false, math.max(at, now + behind_retry_ms), since
end
local function read_pair_step()
  local tat_key, line_key, since_key = next_key(), next_key(), next_key()
  local now = tonumber(next_arg())
  local interval = tonumber(next_arg())
  local tolerance = tonumber(next_arg())
  local member = next_arg()
  local order = tonumber(next_arg())
  local stale_ms = tonumber(next_arg())
  local ttl_ms = tonumber(next_arg())
  local consume = next_arg() == '1'
  local behind_retry_ms = tonumber(next_arg())
  local go, at, since = pair_step(tat_key, line_key, since_key, now, interval, tolerance,
                                  member, order, stale_ms, ttl_ms, consume, behind_retry_ms)
  return go, at, since, line_key, since_key, member, order, now, ttl_ms
end
"""

# KEYS: pair state, line, waiting-since hash. ARGV: now ms, interval ms, tolerance ms, message
# id, its log order, stale ms, ttl ms, consume (1/0), retry ms for a reply behind another.
# Returns {1, now, 0} when the reply may go; else {0, ask-again ms, waiting since ms}.
PAIR_LUA = script(GCRA_LUA, PAIR_STEP_LUA, """
local go, at, since = read_pair_step()
return {go and 1 or 0, at, since}
""")

# ``take`` as one step, for scripts (reads its inputs after PAIR_LUA's, consume 1: KEYS the
# number's state, ARGV its interval ms, max wait ms). The pair's slot, then the number's; a
# reply the number refuses joins its line (the pair's slot stays taken, as when asked in two
# steps). Returns go, send-at or ask-again ms, waiting since ms (0 when it goes), now.
TAKE_STEP_LUA = """
local function read_take_step()
  local go, at, since, line_key, since_key, member, order, now, ttl_ms = read_pair_step()
  if not go then
    return false, at, since, now
  end
  local global_key = next_key()
  local global_interval = tonumber(next_arg())
  local max_wait = tonumber(next_arg())
  local conforms, send_at = gcra(global_key, now, global_interval, 0, max_wait, ttl_ms, true)
  if conforms then
    return true, send_at, 0, now
  end
  return false, send_at, join_line(line_key, since_key, member, order, now, ttl_ms), now
end
"""

# ``take`` in one call: KEYS and ARGV of ``Pacer.take_inputs``.
# Returns {1, send-at ms, 0} or {0, ask-again ms, waiting since ms}.
TAKE_LUA = script(GCRA_LUA, PAIR_STEP_LUA, TAKE_STEP_LUA, """
local go, at, since = read_take_step()
return {go and 1 or 0, at, since}
""")

# KEYS: the number's state. ARGV: now ms, interval ms, max wait ms, ttl ms.
# Returns {1, send-at ms} (the caller sleeps until then) or {0, ask-again ms}.
GLOBAL_LUA = script(GCRA_LUA, """
local tat_key = next_key()
local now = tonumber(next_arg())
local interval = tonumber(next_arg())
local max_wait = tonumber(next_arg())
local ttl_ms = tonumber(next_arg())
local conforms, at = gcra(tat_key, now, interval, 0, max_wait, ttl_ms, true)
return {conforms and 1 or 0, at}
""")

# KEYS: a limiter's state, then (optionally) line and waiting-since hash. ARGV: blocked-until
# state, ttl ms, then message id, log order, now ms. Makes the limiter full until the given
# state and, with a line, puts the reply in it; returns its waiting-since ms (0 without).
BLOCK_LUA = script(GCRA_LUA, """
local tat_key = next_key()
local line_key = next_key()
local since_key = next_key()
local blocked_tat = tonumber(next_arg())
local ttl_ms = tonumber(next_arg())
local current = tonumber(redis.call('GET', tat_key) or '0')
if blocked_tat > current then
  redis.call('SET', tat_key, string.format('%.3f', blocked_tat), 'PX', ttl_ms)
end
if not line_key then
  return 0
end
local member = next_arg()
local order = tonumber(next_arg())
local now = tonumber(next_arg())
return join_line(line_key, since_key, member, order, now, ttl_ms)
""")


def log_order(entry_id: str) -> int:
    """A stream entry id as one number that sorts like the log: ms * 1000 + sequence."""
    ms, _, sequence = entry_id.partition("-")
    return int(ms) * 1000 + min(int(sequence or 0), 999)


@dataclass(frozen=True, slots=True)
class Pacing:
    """``go``: send at ``at_ms`` (now or after a short wait). Else ask again at ``at_ms``;
    the reply has been waiting in its line since ``waiting_since_ms``."""

    go: bool
    at_ms: int
    waiting_since_ms: int = 0


class Pacer:
    """The pair limiters of every recipient and the number's throughput limiter."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        pair: PaceRule,
        max_messages_per_second: float,
        give_up_ms: int,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.pair = pair
        self.throughput = PaceRule.per_second(max_messages_per_second)
        self.give_up_ms = give_up_ms
        self.clock_ms = clock_ms
        self._ttl_ms = give_up_ms + 2 * STALE_MARGIN_MS
        self._pair = redis.register_script(PAIR_LUA)
        self._global = redis.register_script(GLOBAL_LUA)
        self._take = redis.register_script(TAKE_LUA)
        self._block = redis.register_script(BLOCK_LUA)

    def _pair_keys(self, user_id: str) -> list[str]:
        base = self.keys.key(self.keys.partition_of(user_id), f"pace:{user_id}")
        return [f"{base}:tat", f"{base}:line", f"{base}:since"]

    def _global_key(self) -> str:
        return self.keys.key(0, "pace:global")

    def _pair_args(self, message_id: str, order: int, consume: bool) -> list[str | int]:
        return [self.clock_ms(), self.pair.interval_ms, self.pair.tolerance_ms, message_id,
                order, self.give_up_ms + STALE_MARGIN_MS, self._ttl_ms, 1 if consume else 0,
                BEHIND_RETRY_MS]

    async def _pair_step(self, user_id: str, message_id: str, order: int, *,
                         consume: bool) -> Pacing:
        go, at, since = await self._pair(keys=self._pair_keys(user_id),
                                         args=self._pair_args(message_id, order, consume))
        return Pacing(bool(go), int(at), int(since))

    async def may_go(self, user_id: str, message_id: str, order: int) -> Pacing:
        """Would the recipient's pair limiter let this reply go now? Takes nothing; a refused
        reply joins its line."""
        return await self._pair_step(user_id, message_id, order, consume=False)

    def queue_may_go(self, pipe: Pipeline, user_id: str, message_id: str, order: int) -> bool:
        """Add ``may_go`` to ``pipe`` (run with ``raise_on_error=False``) and say so; pass its
        answer to ``may_go_answer``. EVALSHA by hand: a pipeline given the script would first
        ask Redis whether it is loaded, one more round trip per execute. Not on a cluster
        (False): redis-py's cluster pipelines refuse scripts; call ``may_go`` instead."""
        if isinstance(self.redis, RedisCluster):
            return False
        keys = self._pair_keys(user_id)
        pipe.evalsha(self._pair.sha, len(keys), *keys,
                     *self._pair_args(message_id, order, False))
        return True

    async def may_go_answer(self, answer: object, user_id: str, message_id: str,
                            order: int) -> Pacing:
        """The ``Pacing`` of a queued ``may_go``; asks again if Redis had lost the script."""
        if isinstance(answer, NoScriptError):
            return await self.may_go(user_id, message_id, order)
        if isinstance(answer, BaseException):
            raise answer
        go, at, since = answer  # type: ignore[misc]
        return Pacing(bool(go), int(at), int(since))

    @property
    def takes_in_one_step(self) -> bool:
        """Whether ``take`` is one script call (not on a cluster: the number's state lives in
        another slot than the recipient's)."""
        return not isinstance(self.redis, RedisCluster)

    def take_inputs(self, user_id: str, message_id: str, order: int
                    ) -> tuple[list[str], list[str | int]]:
        """The KEYS and ARGV of ``take`` as one step (TAKE_LUA, or a script that starts with
        ``read_take_step``)."""
        return ([*self._pair_keys(user_id), self._global_key()],
                [*self._pair_args(message_id, order, True), self.throughput.interval_ms,
                 THROUGHPUT_MAX_WAIT_MS])

    async def take(self, user_id: str, message_id: str, order: int) -> Pacing:
        """Take a slot of the recipient's pair limiter, then one of the number's; ``go`` with
        the time to send at, or refused (the reply is in its line). One script call; on a
        cluster (the number's state lives in another slot) two."""
        if self.takes_in_one_step:
            keys, args = self.take_inputs(user_id, message_id, order)
            go, at, since = await self._take(keys=keys, args=args)
            return Pacing(bool(go), int(at), int(since))
        pacing = await self._pair_step(user_id, message_id, order, consume=True)
        if not pacing.go:
            return pacing
        now = self.clock_ms()
        go, at = await self._global(keys=[self._global_key()], args=[
            now, self.throughput.interval_ms, THROUGHPUT_MAX_WAIT_MS, self._ttl_ms])
        if go:
            return Pacing(True, int(at))
        return await self._wait_in_line(user_id, message_id, order, int(at))

    async def pair_blocked(self, user_id: str, message_id: str, order: int) -> Pacing:
        """Meta answered 131056: the pair is full for one interval; the reply waits its turn."""
        now = self.clock_ms()
        tat = now + self.pair.interval_ms + self.pair.tolerance_ms
        since = await self._block(keys=self._pair_keys(user_id), args=[
            f"{tat:.3f}", self._ttl_ms, message_id, order, now])
        return Pacing(False, int(now + self.pair.interval_ms), int(since))

    async def throughput_blocked(self, user_id: str, message_id: str, order: int) -> Pacing:
        """Meta answered a throughput error: the whole number pauses; the reply waits."""
        now = self.clock_ms()
        await self._block(keys=[self._global_key()], args=[
            f"{now + THROUGHPUT_PAUSE_MS:.3f}", self._ttl_ms])
        return await self._wait_in_line(user_id, message_id, order, now + THROUGHPUT_PAUSE_MS)

    async def _wait_in_line(self, user_id: str, message_id: str, order: int,
                            at_ms: int) -> Pacing:
        """Put the reply in its recipient's line (the pair state untouched) until ``at_ms``."""
        pair_keys = self._pair_keys(user_id)
        since = await self._block(keys=pair_keys, args=[0, self._ttl_ms, message_id, order,
                                                        self.clock_ms()])
        return Pacing(False, at_ms, int(since))

    async def leave_line(self, user_id: str, message_id: str) -> None:
        """The reply is settled (sent, skipped or given up): it holds its line no longer."""
        _tat, line, since = self._pair_keys(user_id)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrem(line, message_id)
            pipe.hdel(since, message_id)
            await pipe.execute()

    async def line_of(self, user_id: str) -> list[str]:
        """The message ids waiting in the recipient's line, first first (for tests and ops)."""
        return [as_text(m) for m in await self.redis.zrange(self._pair_keys(user_id)[1], 0, -1)]
