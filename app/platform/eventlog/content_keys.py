"""Where users' content keys live, and how a process gets one to seal or to open with.

A user's current key sits, wrapped, in a Redis hash in the user's partition
(``<tag>:contentkey:<user id>``: ``id``, ``wrapped``, ``entry``). The first writer makes it in
one Lua step that also appends a ``UserKeyIssued`` event to the partition's stream, so the
projector stores it durably in PostgreSQL's ``user_keys`` before any entry sealed with it
(same partition, later in the log) is projected; replay opens the archive with ``user_keys``.
``mecove forget`` deletes both copies; a sealing append checks, in its own atomic step, that
the key it used is still the user's (``KEY_IS_CURRENT_LUA``), so nothing is sealed with a
destroyed key. Unwrapped keys are cached per process by key id (ids are never reused), the
latest ``KEYS_KEPT`` of each cache, so a process's memory does not grow with its users.
"""

from __future__ import annotations

import uuid
from collections.abc import Container, Iterable, Mapping

import asyncpg
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from app.platform.clock import now_ms
from app.platform.eventlog.content_crypto import (
    DataKey,
    Keyring,
    MasterKeys,
    key_owners,
    new_data_key,
)
from app.platform.eventlog.entries import ENTRY_LUA, as_text, entry_values
from app.platform.eventlog.keys import Keys
from app.platform.eventlog.lua import script
from app.platform.eventlog.unwrapped_keys import UnwrappedKeys
from schema.events import Event, UserForgotten, UserKeyIssued
from schema.ids import NAMESPACE

__all__ = ["ISSUE_KEY_LUA", "KEYS_KEPT", "KEY_IS_CURRENT_LUA", "ContentKeys", "durable_keyring",
           "keys_in_events", "master_keys_for", "own_keys"]

# Per cache (writing, reading). A key's AES-GCM object holds an OpenSSL context of about
# 2.5 KB (measured: 6,600 AESGCM objects, RSS / count), so 2,000 keys are about 5 MB a cache;
# 20,000 took the api past its 100 MB budget in bench.e2e, where every sender is new.
KEYS_KEPT = 2_000

# KEYS: the user's key hash, stream. ARGV: new key id, its wrapped key, UserKeyIssued values.
# Returns {key id, wrapped key} of the user's current key: the one there, else the new one.
ISSUE_KEY_LUA = script(ENTRY_LUA, """
local key_hash = next_key()
local stream_key = next_key()
local key_id = next_arg()
local wrapped = next_arg()
local event = next_event()
local current = redis.call('HMGET', key_hash, 'id', 'wrapped')
if current[1] then
  return current
end
local entry_id = xadd_event(stream_key, event)
redis.call('HSET', key_hash, 'id', key_id, 'wrapped', wrapped, 'entry', entry_id)
return {key_id, wrapped}
""")

# For scripts that append sealed content: false when ``key_id`` is not the user's key any more.
# A user's key id is read once per script call (nothing in the call changes it, and the call is
# atomic): a call carrying several messages of a user asks once (decision 0031).
KEY_IS_CURRENT_LUA = """
local current_key_ids = {}
local function key_is_current(key_hash, key_id)
  if key_id == '' then return true end
  local current = current_key_ids[key_hash]
  if current == nil then
    current = redis.call('HGET', key_hash, 'id')
    current_key_ids[key_hash] = current
  end
  return current == key_id
end
"""


def keys_in_events(events: Iterable[Event], master: MasterKeys,
                   wanted: Container[str] | None = None) -> dict[str, DataKey]:
    """Keys carried by UserKeyIssued events (a batch may hold a key and what it sealed);
    only those in ``wanted`` when given (unwrapping costs an AES-GCM context each)."""
    return {e.key_id: master.unwrap(e.wrapped_key, e.key_id)
            for e in events if isinstance(e, UserKeyIssued)
            and (wanted is None or e.key_id in wanted)}


class ContentKeys:
    """Gets users' data keys: to seal (making one when needed) and to open (by key id)."""

    def __init__(self, redis: Redis, keys: Keys, master: MasterKeys) -> None:
        self.redis = redis
        self.keys = keys
        self.master = master
        self._writing: dict[str, DataKey] = {}  # user id -> current key
        self._reading: dict[str, DataKey] = {}  # key id -> key
        self._issue = redis.register_script(ISSUE_KEY_LUA)

    def key_hash(self, user_id: str, partition: int | None = None) -> str:
        """``<tag>:contentkey:<user id>``, in the user's partition (``partition``, when the
        caller knows it already)."""
        if partition is None:
            partition = self.keys.partition_of(user_id)
        return f"{self.keys.tag(partition)}:contentkey:{user_id}"  # ``keys.key``, one string

    def cached_for_writing(self, user_id: str) -> DataKey | None:
        """The user's key as ``for_writing`` last gave it, without awaiting (None: ask it)."""
        return self._writing.get(user_id)

    async def for_writing(self, user_id: str) -> DataKey:
        """The user's current key, made (and its UserKeyIssued appended) on first use."""
        cached = self._writing.get(user_id)
        if cached is not None:
            return cached
        fresh, raw = new_data_key()
        wrapped = self.master.wrap(raw, fresh.key_id)
        issued = UserKeyIssued(
            event_id=str(uuid.uuid5(NAMESPACE, f"event:UserKeyIssued:{fresh.key_id}")),
            occurred_at=now_ms(), user_id=user_id, key_id=fresh.key_id, wrapped_key=wrapped)
        stream = self.keys.stream(self.keys.partition_of(user_id))
        key_id, stored = await self._issue(keys=[self.key_hash(user_id), stream],
                                           args=[fresh.key_id, wrapped, *entry_values(issued)])
        key = fresh if as_text(key_id) == fresh.key_id else self.master.unwrap(
            as_text(stored), as_text(key_id))
        _remember(self._writing, user_id, key)
        _remember(self._reading, key.key_id, key)
        return key

    def is_cached(self, key_id: str) -> bool:
        """Whether ``keyring`` would find the key ``key_id`` without asking Redis."""
        return key_id in self._reading

    def queue_read(self, pipe: Pipeline, user_id: str) -> None:
        """Add the read of the user's stored key to ``pipe`` (for a caller that reads other
        things of the user in the same round trip); pass its answer to ``learn``."""
        pipe.hmget(self.key_hash(user_id), "id", "wrapped")

    def learn(self, key_id: str, answer: object) -> None:
        """Cache the key a queued ``queue_read`` found, when it is ``key_id`` (a destroyed or
        replaced key, or a failed read, caches nothing: ``keyring`` then asks as usual)."""
        if not isinstance(answer, list | tuple) or len(answer) != 2:
            return
        found_id, wrapped = answer
        if as_text(found_id) == key_id and wrapped is not None:
            _remember(self._reading, key_id, self.master.unwrap(as_text(wrapped), key_id))

    def drop(self, user_id: str) -> None:
        """Forget the cached key of a user whose key was destroyed (an append said so)."""
        key = self._writing.pop(user_id, None)
        if key is not None:
            self._reading.pop(key.key_id, None)

    async def keyring(self, events: Iterable[Event], *, also: Mapping[str, str] | None = None,
                      database: asyncpg.Connection | asyncpg.Pool | None = None) -> Keyring:
        """Keys for opening ``events`` and the values ``also`` names (key id -> its user).

        Looks in this process's cache, the events' own UserKeyIssued, Redis, then PostgreSQL
        when ``database`` is given; a key found nowhere was destroyed and is left out.
        """
        listed = list(events)
        user_ids = {**key_owners(listed), **(also or {})}
        wanted = set(user_ids)
        for event in listed:
            if isinstance(event, UserForgotten):
                for key_id in event.key_ids:
                    self._reading.pop(key_id, None)
                self._writing.pop(event.user_id, None)
        for key_id, key in keys_in_events(listed, self.master).items():
            _remember(self._reading, key_id, key)
        ring = {k: self._reading[k] for k in wanted if k in self._reading}
        missing = [k for k in wanted if k not in ring]
        if missing:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key_id in missing:
                    pipe.hmget(self.key_hash(user_ids[key_id]), "id", "wrapped")
                replies = await pipe.execute()
            for key_id, (found_id, wrapped) in zip(missing, replies, strict=True):
                if as_text(found_id) == key_id and wrapped is not None:
                    ring[key_id] = self.master.unwrap(as_text(wrapped), key_id)
                    _remember(self._reading, key_id, ring[key_id])
        if database is not None:
            ring.update(await durable_keys(database, self.master,
                                           [k for k in wanted if k not in ring]))
            for key_id, key in ring.items():
                _remember(self._reading, key_id, key)
        return ring


def _remember(cache: dict[str, DataKey], name: str, key: DataKey) -> None:
    """Put ``key`` in ``cache``, forgetting the oldest entry when it holds ``KEYS_KEPT``."""
    if name not in cache and len(cache) >= KEYS_KEPT:
        del cache[next(iter(cache))]
    cache[name] = key


async def durable_keys(database: asyncpg.Connection | asyncpg.Pool, master: MasterKeys,
                       key_ids: list[str]) -> dict[str, DataKey]:
    """The keys of ``key_ids`` still in ``user_keys`` (the rest were destroyed)."""
    if not key_ids:
        return {}
    rows = await database.fetch(
        "SELECT key_id, wrapped_key FROM user_keys WHERE key_id = ANY($1::text[])", key_ids)
    return {r["key_id"]: master.unwrap(r["wrapped_key"], r["key_id"]) for r in rows}


def own_keys(events: Iterable[Event], wanted: Container[str],
             unwrapped: UnwrappedKeys) -> dict[str, DataKey]:
    """The keys of ``wanted`` the events' own UserKeyIssued carry; the keys their
    UserForgotten name leave ``unwrapped``. One pass: a batch holds few of either."""
    ring: dict[str, DataKey] = {}
    for event in events:
        kind = type(event)  # exact types (events have no subclasses): one lookup per event
        if kind is UserKeyIssued:
            if event.key_id in wanted:  # type: ignore[attr-defined]
                ring[event.key_id] = unwrapped.unwrap(  # type: ignore[attr-defined]
                    event.wrapped_key, event.key_id)  # type: ignore[attr-defined]
        elif kind is UserForgotten:
            unwrapped.forget(event.key_ids)  # type: ignore[attr-defined]
    return ring


async def durable_keyring(events: Iterable[Event], database: asyncpg.Connection | asyncpg.Pool,
                          master: MasterKeys | None,
                          unwrapped: UnwrappedKeys | None = None, *,
                          wanted: Mapping[str, str] | None = None) -> Keyring:
    """Keys to open ``events`` from PostgreSQL alone (the projector and replay): the batch's
    own UserKeyIssued, then ``user_keys``, asked about every other key on each call, so a
    destroyed key is never used again; without a master key the keyring is empty (sealed
    content reads erased). ``unwrapped`` (the caller's memo) spares unwrapping a key again
    that ``user_keys`` still holds; it drops the keys the events forget and those
    ``user_keys`` no longer holds. ``wanted``: ``key_owners(events)``, when the caller has it."""
    listed = list(events)
    if master is None:
        return {}
    if wanted is None:
        wanted = key_owners(listed)
    if unwrapped is None:
        ring = keys_in_events(listed, master, wanted)
        ring.update(await durable_keys(database, master, [k for k in wanted if k not in ring]))
        return ring
    ring = own_keys(listed, wanted, unwrapped)
    asked = [k for k in wanted if k not in ring]
    if not asked:
        return ring
    held = unwrapped.held(asked)
    # One row of arrays (no record per key): the kept keys user_keys still holds, and the
    # others it holds with their wrapped keys. ``= ANY`` probes, the kept ones reading the
    # primary key alone: half the backend CPU of a join with ``unnest`` (decision 0030).
    kept, other_ids, other_wrapped = await database.fetchrow(
        "SELECT ARRAY(SELECT key_id FROM user_keys WHERE key_id = ANY($1::text[])), "
        "coalesce(array_agg(u.key_id), '{}'), coalesce(array_agg(u.wrapped_key), '{}') "
        "FROM user_keys AS u WHERE u.key_id = ANY($2::text[])",
        [k for k in asked if k in held], [k for k in asked if k not in held])
    opening_key = unwrapped.opening_key
    for key_id in kept:
        ring[key_id] = opening_key(key_id, held[key_id])
    for key_id, wrapped in zip(other_ids, other_wrapped, strict=True):
        ring[key_id] = unwrapped.unwrap(wrapped, key_id)
    unwrapped.forget([k for k in held if k not in ring])
    return ring


def master_keys_for(master_key: str | None, previous: str | None) -> MasterKeys | None:
    """``MECOVE_MASTER_KEY`` (and the previous one during a rotation) as MasterKeys."""
    if master_key is None:
        return None
    return MasterKeys(MasterKeys.parse(master_key),
                      MasterKeys.parse(previous) if previous else None)
