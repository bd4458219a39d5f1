"""The last step before a send, in one round trip where it can be: the pace's slots
(``Pacer.take``) and, when the reply may go at once, the count of the user's messages after it
(for the reply mode, decided at send time) and the message's reply claim (``SET NX`` of
``sending:…``, docs/decisions/0003-reply-at-most-once.md) — one script call instead of two.

The claim is only ever taken after the pace said "go now", exactly as in two steps. Where the
two are not one call on one server (a cluster: the number's pace lives in another slot; or
``MECOVE_REDIS_MIN_REPLICAS`` > 0: the claim must be confirmed by ``WAIT`` on its master's
connection) the replier keeps the two steps; so it does when the number's pace asks for a wait
longer than ``CLAIM_WITHIN_MS`` (``claimed`` False: it waits, then claims).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from app.platform.eventlog.lua import script
from consumers.whatsapp.pacer import GCRA_LUA, PAIR_STEP_LUA, TAKE_STEP_LUA, Pacing

__all__ = ["CLAIM_WITHIN_MS", "SEND_GATE_LUA", "Gate", "SendGate"]

# The longest wait for the number's pace that the gate claims before rather than after: the
# pace answers in whole ms, so a number paced faster than one send per ms (or a send in the
# same ms as another) waits 1 ms; a crash in that 1 ms leaves the reply "in doubt" as a crash
# during the send itself would.
CLAIM_WITHIN_MS = 1

# KEYS and ARGV of ``Pacer.take_inputs``, then KEYS the user's tracking zset, the message's
# reply outcome; ARGV the longest wait to claim before, the count's lower bound (exclusive),
# the ``sending:`` state, its ttl s.
# Returns {go, send-at or ask-again ms, waiting since ms, claimed, messages after, taken}.
SEND_GATE_LUA = script(GCRA_LUA, PAIR_STEP_LUA, TAKE_STEP_LUA, """
local go, at, since, now = read_take_step()
if not go then
  return {0, at, since, 0, 0, 0}
end
local tracking_key = next_key()
local outcome_key = next_key()
local claim_within_ms = tonumber(next_arg())
if at > now + claim_within_ms then
  return {1, at, 0, 0, 0, 0}
end
local after = next_arg()
local state = next_arg()
local outcome_ttl_s = tonumber(next_arg())
local count = redis.call('ZCOUNT', tracking_key, after, '+inf')
local taken = redis.call('SET', outcome_key, state, 'NX', 'EX', outcome_ttl_s)
return {1, at, 0, 1, count, taken and 1 or 0}
""")


@dataclass(frozen=True, slots=True)
class Gate:
    """The pace's answer; when ``claimed``, also the claim's: how many of the user's messages
    came after this one, and whether ``sending:`` was taken (False: another attempt holds or
    settled the reply)."""

    pacing: Pacing
    claimed: bool
    messages_after: int = 0
    taken: bool = False


class SendGate:
    """Runs ``SEND_GATE_LUA`` (on one server, without replicas to wait for)."""

    def __init__(self, redis: Redis) -> None:
        self._gate = redis.register_script(SEND_GATE_LUA)

    async def take(self, pace: tuple[list[str], list[str | int]], tracking_key: str,
                   after: str, outcome_key: str, sending: str, outcome_ttl_s: int) -> Gate:
        """The pace's slots (``pace``: ``Pacer.take_inputs``); when it says go now (or within
        ``CLAIM_WITHIN_MS``), the count of ``tracking_key`` above ``after`` and
        ``SET outcome_key sending NX EX ttl``."""
        pace_keys, pace_args = pace
        go, at, since, claimed, count, taken = await self._gate(
            keys=[*pace_keys, tracking_key, outcome_key],
            args=[*pace_args, CLAIM_WITHIN_MS, after, sending, outcome_ttl_s])
        return Gate(Pacing(bool(go), int(at), int(since)), bool(claimed), int(count),
                    bool(taken))
