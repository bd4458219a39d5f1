"""Counting what the pipeline did, from the places that tell the truth: the Redis log, the
PostgreSQL projection, the fake Graph API's confirmed sends and the dead-letter stream.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any, cast

import asyncpg
import msgspec
from redis.asyncio import Redis

from app.platform.eventlog.entries import as_text, decode_event
from app.platform.eventlog.keys import Keys
from schema.events import MessageReceived, decode_body
from tests.faults.traffic import WAMID_IN_TEXT

PAGE = 2_000
Fields = dict[bytes, bytes]
Entries = list[tuple[bytes, Fields]]


async def stream_entries(redis: Redis, keys: Keys) -> list[tuple[str, Fields]]:
    """Every entry of every partition stream, oldest first within a partition."""
    out: list[tuple[str, Fields]] = []
    for stream in keys.streams():
        start = "-"
        while True:
            page = cast(Entries, await redis.xrange(stream, min=start, max="+", count=PAGE))
            out += [(as_text(i), f) for i, f in page]
            if len(page) < PAGE:
                break
            start = "(" + as_text(page[-1][0])
    return out


async def received_wamids(redis: Redis, keys: Keys) -> Counter[str]:
    """wamid -> how many MessageReceived events the log holds for it."""
    counts: Counter[str] = Counter()
    for _, fields in await stream_entries(redis, keys):
        if fields.get(b"type") == b"MessageReceived":
            event = decode_event(fields)
            assert isinstance(event, MessageReceived)
            counts[event.source_message_id] += 1
    return counts


async def event_types(redis: Redis, keys: Keys) -> Counter[str]:
    return Counter(as_text(f.get(b"type", b"?")) for _, f in await stream_entries(redis, keys))


async def dedupe_marks(redis: Redis, keys: Keys, channel: str = "whatsapp") -> set[tuple[str, str]]:
    """(user key, wamid) of every dedupe key the ingress has set."""
    marks: set[tuple[str, str]] = set()
    for partition in range(keys.partitions):
        prefix = keys.dedupe(partition, channel, "", "")[:-2]  # "...:dedupe:whatsapp"
        async for raw in redis.scan_iter(match=f"{prefix}:*", count=1_000):
            user_key, _, wamid = as_text(cast(bytes, raw))[len(prefix) + 1:].partition(":")
            marks.add((user_key, wamid))
    return marks


async def received_marks(redis: Redis, keys: Keys) -> set[tuple[str, str]]:
    """(user key, wamid) of every MessageReceived in the log."""
    marks: set[tuple[str, str]] = set()
    for _, fields in await stream_entries(redis, keys):
        if fields.get(b"type") == b"MessageReceived":
            event = decode_event(fields)
            assert isinstance(event, MessageReceived)
            marks.add((event.channel_user_key, event.source_message_id))
    return marks


async def projected_wamids(database_url: str) -> Counter[str]:
    """wamid -> how many message rows PostgreSQL holds for it."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT source_message_id FROM messages")
    finally:
        await connection.close()
    return Counter(r["source_message_id"] for r in rows)


async def replied_rows(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval(
            "SELECT count(*) FROM messages WHERE replied_at IS NOT NULL"))
    finally:
        await connection.close()


def confirmed_sends(bodies: Iterable[Any]) -> Counter[str]:
    """wamid -> confirmed (HTTP 200) sends whose text answers it (``re: ... wamid.X``)."""
    counts: Counter[str] = Counter()
    for body in bodies:
        text = str(body.get("text", {}).get("body", ""))
        found = WAMID_IN_TEXT.search(text)
        counts[found.group(0) if found else f"<unattributable: {text[:40]}>"] += 1
    return counts


async def dead_letters(redis: Redis, keys: Keys) -> list[dict[bytes, bytes]]:
    out: list[dict[bytes, bytes]] = []
    for partition in range(keys.partitions):
        page = cast(Entries, await redis.xrange(keys.dead_letters(partition)))
        out += [f for _, f in page]
    return out


def wamid_of_dead_letter(fields: dict[bytes, bytes]) -> str | None:
    body = fields.get(b"event_body")
    if body is None:
        return None
    try:
        event = decode_body(body)
    except msgspec.DecodeError:
        return None
    return event.source_message_id if isinstance(event, MessageReceived) else None


def in_doubt(letters: Iterable[dict[bytes, bytes]]) -> Counter[str]:
    """wamid -> replier dead letters of the "in doubt" kind (a send may have gone out)."""
    counts: Counter[str] = Counter()
    for fields in letters:
        if fields.get(b"group") == b"replier" and fields.get(b"error", b"").startswith(
                b"ReplyInDoubt"):
            counts[wamid_of_dead_letter(fields) or "<no event body>"] += 1
    return counts


def describe_dead_letters(letters: Iterable[dict[bytes, bytes]], limit: int = 5) -> str:
    shown = [f"{as_text(f.get(b'group', b'?'))}: {as_text(f.get(b'error', b'?'))[:160]}"
             for f in letters]
    return "; ".join(shown[:limit]) + (f" (+{len(shown) - limit} more)" if len(shown) > limit
                                      else "")


async def group_caught_up(redis: Redis, keys: Keys, group: str) -> bool:
    """Every entry of every partition delivered to ``group`` and acknowledged."""
    for stream in keys.streams():
        state = {as_text(g["name"]): g for g in await redis.xinfo_groups(stream)}.get(group)
        if state is None or state["pending"]:
            return False
        if state.get("lag") is not None:  # Redis 7 counts what is left to deliver
            if state["lag"] != 0:
                return False
            continue
        # Redis 6.2 has no lag: compare the last delivered id with the last entry.
        tail = cast(Entries, await redis.xrevrange(stream, count=1))
        if tail and as_text(state["last-delivered-id"]) != as_text(tail[0][0]):
            return False
    return True


async def purge_prefix(redis: Redis, prefix: str) -> int:
    """UNLINK every key under ``prefix:`` in batches (a soak leaves tens of thousands)."""
    removed = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=f"{prefix}:*", count=5_000):
        batch.append(cast(bytes, key))
        if len(batch) >= 5_000:
            removed += int(await redis.unlink(*batch))
            batch = []
    if batch:
        removed += int(await redis.unlink(*batch))
    return removed
