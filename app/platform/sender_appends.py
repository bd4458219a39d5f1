"""Received messages appended with their senders resolved: one script call on a single Redis.

The ingress must know a message's user before it can build and seal the event (the user picks
the partition, the conversation keys and the data key), and resolving the sender is a script of
its own (``identities``). Two round trips per webhook batch cost more CPU than anything else
the ingress does for it, so on a single Redis both run in one script: the process *guesses*
each sender's user (its last resolution in this process), builds and seals the events for
that guess, and ``RESOLVE_AND_APPEND_LUA`` resolves every sender exactly as
``RESOLVE_IDENTITIES_LUA`` would, appending only when every resolution matches its guess.
A delivery with a sender this process has not resolved yet takes the two calls (guessing a
first sighting could issue a content key to a user that is not the sender). A wrong guess
appends nothing: the links the script made stay (as after a crash between the
two steps), and the caller appends again, through ``EventLog.append_messages``, events built
from the resolutions the script answered. A content key destroyed meanwhile is handled the
same way (that path seals again with the user's new key).

On a Redis Cluster the links (``{ids}`` tag) and the partition's keys live in different slots,
so one script cannot hold both: there ``append_texts`` resolves, then appends (two calls).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec
from redis.asyncio import RedisCluster

from app.platform.eventlog.append import (
    APPEND_MESSAGE_STEP_LUA,
    STALE_KEY,
    EventLog,
)
from app.platform.eventlog.content_keys import KEY_IS_CURRENT_LUA
from app.platform.eventlog.entries import ENTRY_LUA, as_text
from app.platform.eventlog.lua import PACKED_ARGS_LUA, packed_args, script
from app.platform.identities import RESOLVE_SENDER_LUA, IdentityLinks, Resolution, Sender
from app.platform.same_turn_batches import SameTurnBatches
from schema.events import MessageReceived

__all__ = ["RESOLVE_AND_APPEND_LUA", "SenderAppends"]

GUESSED_WRONG = "!guess"

# Decision 0035: two calls in flight, of at most twelve deliveries each. Redis runs one while
# the process builds the next and answers the last, and a short call (~25 µs of Redis a
# message) answers its callers in several waves per round trip of the others, not in halves.
CALLS_IN_FLIGHT = 2
CALLERS_PER_CALL = 12

# KEYS: stream, then per message the keys of RESOLVE_SENDER_LUA, then per message the keys of
#       APPEND_MESSAGE_STEP_LUA.
# ARGV: dedupe ttl s, tracking window ms, context ttl s, recent kept, message count, then one
#       packed argument (lua.packed_args) holding, per message, the arguments of
#       RESOLVE_SENDER_LUA, the guessed user id and phone state, then per message the
#       arguments of APPEND_MESSAGE_STEP_LUA.
# Returns one flat array: per message its user id, phone state and links created, then per
#         message the new entry id, "" (duplicate) or STALE_KEY, or GUESSED_WRONG for all
#         when a guess was wrong. Flat, not a table per message: Redis turns each Lua table
#         of a reply into RESP after probing it for six special fields (decision 0031).
RESOLVE_AND_APPEND_LUA = script(
    ENTRY_LUA,
    KEY_IS_CURRENT_LUA,
    PACKED_ARGS_LUA,
    RESOLVE_SENDER_LUA,
    APPEND_MESSAGE_STEP_LUA,
    """
local stream_key = next_key()
local settings = next_append_settings()
local count = tonumber(next_arg())
unpack_args()
local reply = {}
local as_guessed = true
-- No rewrite of the links read (confirm false): this script runs on one Redis only, whose
-- replicas take its writes in order, so the WAIT after any later write on it covers every
-- link read here: after the appends below, or, for a wrong guess (nothing appended), after
-- the caller's append with the resolutions this call returns.
for i = 1, count do
  local user, phone_state, created = resolve_sender(false)
  local guessed_user = next_arg()
  local guessed_phone_state = next_arg()
  reply[3 * i - 2], reply[3 * i - 1], reply[3 * i] = user, phone_state, created
  if user ~= guessed_user or phone_state ~= guessed_phone_state then
    as_guessed = false
  end
end
for i = 3 * count + 1, 4 * count do
  if as_guessed then
    reply[i] = append_message(stream_key, settings)
  else
    reply[i] = '"""
    + GUESSED_WRONG
    + """'
  end
end
return reply
""",
)

BuildEvents = Callable[[list[Resolution]], list[MessageReceived]]


class _Guessed(msgspec.Struct, frozen=True, gc=False):  # per message: see identities.Sender
    sender: Sender
    guess: Resolution
    event: MessageReceived  # built for the guess


class _Answer(msgspec.Struct, frozen=True, gc=False):
    resolution: Resolution  # what Redis decided
    entry_id: str | None  # None: a duplicate
    again: bool  # nothing appended (wrong guess, or a destroyed content key): append again


def _phone_state(sender: Sender, resolution: Resolution) -> str:
    if resolution.phone is not None:
        return "linked"
    return "conflict" if sender.phone is not None else "none"


class SenderAppends:
    """Appends received messages whose senders it resolves (one shared instance per process)."""

    def __init__(self, identity_links: IdentityLinks, event_log: EventLog) -> None:
        self.identity_links = identity_links
        self.event_log = event_log
        self.one_script = not isinstance(event_log.redis, RedisCluster)
        self._resolve_and_append = event_log.redis.register_script(RESOLVE_AND_APPEND_LUA)
        self._batches: SameTurnBatches[_Guessed, _Answer] = SameTurnBatches(
            self._append_now, max_callers=CALLERS_PER_CALL, max_running=CALLS_IN_FLIGHT
        )

    async def append_texts(self, senders: Sequence[Sender], build: BuildEvents) -> list[str | None]:
        """Resolve ``senders`` (per decision 0007) and append the events ``build`` makes of
        their resolutions (one per sender, in order); returns each new entry id, or None for
        a duplicate. Raises RedisError when Redis is unreachable."""
        known = [self.identity_links.guess(sender) for sender in senders]
        guesses = [guess for guess in known if guess is not None]
        if not self.one_script or len(guesses) < len(known):
            return await self.event_log.append_messages(
                build(await self.identity_links.resolve(senders))
            )
        events = build(guesses)
        answers = await self._batches.submit(
            [_Guessed(s, g, e) for s, g, e in zip(senders, guesses, events, strict=True)]
        )
        again = [i for i, answer in enumerate(answers) if answer.again]
        if not again:
            return [answer.entry_id for answer in answers]
        rebuilt = build([answer.resolution for answer in answers])
        appended = await self.event_log.append_messages([rebuilt[i] for i in again])
        results = [answer.entry_id for answer in answers]
        for index, entry_id in zip(again, appended, strict=True):
            results[index] = entry_id
        return results

    async def _append_now(self, items: list[_Guessed]) -> list[_Answer]:
        """One script call per partition the guesses point to."""
        log = self.event_log
        answers: list[_Answer | None] = [None] * len(items)
        by_partition = log.by_partition([item.event for item in items])
        for partition, indexes in by_partition.items():
            stream = log.keys.stream(partition)
            keys: list[str] = [stream]
            values: list[str | int] = []
            for index in indexes:
                item = items[index]
                self.identity_links.add_inputs(item.sender, keys, values)
                values += [item.guess.user_id, _phone_state(item.sender, item.guess)]
            for index in indexes:
                event = items[index].event
                key = log.cached_key(event.user_id)
                if key is False:
                    await log.add_message_inputs(event, partition, keys, values)
                else:
                    log.add_sealed_inputs(event, key, partition, keys, values)
            args = [*log.append_settings(), len(indexes), packed_args(values)]
            reply = await log.writes.script(stream, self._resolve_and_append, keys, args)
            count = len(indexes)
            for n, (index, raw_entry_id) in enumerate(zip(indexes, reply[3 * count:],
                                                          strict=True)):
                resolution = self.identity_links.resolution_from(
                    items[index].sender, reply[3 * n:3 * n + 3])
                entry_id = as_text(raw_entry_id)
                if entry_id == STALE_KEY and log.content is not None:
                    log.content.drop(resolution.user_id)
                again = entry_id in (STALE_KEY, GUESSED_WRONG)
                answers[index] = _Answer(resolution, None if again else entry_id or None, again)
        done = [answer for answer in answers if answer is not None]
        if len(done) != len(items):
            raise AssertionError("a message was in no partition's script call")
        return done
