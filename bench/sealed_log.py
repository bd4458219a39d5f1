"""Received messages appended as the ingress logs them: sealed with their user's content key.

Production seals every message's content with a per-user data key (decision 0010): a user's
first message makes the key (``ContentKeys.for_writing``, whose Lua step appends the
``UserKeyIssued`` to the user's partition), and every message goes in sealed (``seal_event``).
Benchmarks that start at the log append the same way, with the bench's master key (the one
``clean_env`` gives the processes they start), so the consumers pay the decryption and the
``user_keys`` rows production pays. This is set-up, not timed: per batch, the keys of its new
users are made concurrently, then its messages go in one pipeline of XADDs.

``logged_entries`` reads the stream back, so what a baseline builds is what the log holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from app.platform.eventlog.content_crypto import DataKey, MasterKeys, seal_event
from app.platform.eventlog.content_keys import ContentKeys
from app.platform.eventlog.entries import BODY, as_text, decode_event, encode_event
from app.platform.eventlog.keys import Keys
from bench.processes import BENCH_MASTER_KEY
from schema.events import AnyEvent, MessageReceived

KEYS_AT_ONCE = 64  # concurrent key issues (one Lua call each, each on its own connection)
READ_BATCH = 10_000  # entries per XRANGE when reading the stream back


@dataclass(frozen=True, slots=True)
class LoggedEntry:
    """One stream entry: its id, its event (content still sealed) and its body as logged."""

    entry_id: str
    event: AnyEvent
    body: bytes


def bench_master_keys() -> MasterKeys:
    """The master key every process of a bench run gets as ``MECOVE_MASTER_KEY``."""
    return MasterKeys(MasterKeys.parse(BENCH_MASTER_KEY))


async def append_sealed(
    redis_url: str, keys: Keys, events: Sequence[MessageReceived], batch: int
) -> dict[str, DataKey]:
    """Append ``events`` sealed, each user's UserKeyIssued before its first message; returns
    the data keys made (key id -> key)."""
    redis = Redis.from_url(redis_url, max_connections=KEYS_AT_ONCE * 2)
    content = ContentKeys(redis, keys, bench_master_keys())
    by_user: dict[str, DataKey] = {}
    try:
        for start in range(0, len(events), batch):
            chunk = events[start : start + batch]
            new_users = list(dict.fromkeys(e.user_id for e in chunk if e.user_id not in by_user))
            for first in range(0, len(new_users), KEYS_AT_ONCE):
                group = new_users[first : first + KEYS_AT_ONCE]
                made = await asyncio.gather(*(content.for_writing(u) for u in group))
                by_user.update(zip(group, made, strict=True))
            async with redis.pipeline(transaction=False) as pipe:
                for event in chunk:
                    stream = keys.stream(keys.partition_of(event.user_id))
                    sealed = seal_event(event, by_user[event.user_id])
                    pipe.xadd(stream, encode_event(sealed))  # type: ignore[arg-type]
                await pipe.execute()
    finally:
        await redis.aclose()
    return {key.key_id: key for key in by_user.values()}


async def logged_entries(redis_url: str, stream: str) -> list[LoggedEntry]:
    """Every entry of ``stream``, in order, decoded as the consumers decode it."""
    redis = Redis.from_url(redis_url)
    entries: list[LoggedEntry] = []
    start = "-"
    try:
        while True:
            page = await redis.xrange(stream, min=start, count=READ_BATCH)
            for entry_id, fields in page:
                entries.append(LoggedEntry(as_text(entry_id), decode_event(fields), fields[BODY]))
            if len(page) < READ_BATCH:
                return entries
            start = "(" + as_text(page[-1][0])
    finally:
        await redis.aclose()
