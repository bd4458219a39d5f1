"""``mecove trim``: delete stream entries only once archived and acknowledged by every group.

The oldest entry that must stay is the earliest of: each group's oldest pending entry, the
entry after each group's last-delivered id, and the entry after the projector's checkpoint
(everything at or below it is in the event archive). ``XTRIM MINID`` keeps it and all after.
"""

from __future__ import annotations

import logging

import asyncpg
from redis.asyncio import Redis

from app.platform.eventlog.keys import Keys

log = logging.getLogger("mecove.trim")


def _position(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _next(entry_id: str) -> tuple[int, int]:
    ms, seq = _position(entry_id)
    return ms, seq + 1


async def trim_point(redis: Redis, stream: str, checkpoint: str | None) -> tuple[int, int] | None:
    """The smallest entry id that must be kept, or None when nothing may be trimmed."""
    if checkpoint is None:
        return None  # nothing is known to be archived
    keep = [_next(checkpoint)]
    for info in await redis.xinfo_groups(stream):
        group = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        last = info["last-delivered-id"]
        keep.append(_next(last.decode() if isinstance(last, bytes) else last))
        if int(info["pending"]):
            first = await redis.xpending_range(stream, group, min="-", max="+", count=1)
            if first:
                raw = first[0]["message_id"]
                keep.append(_position(raw.decode() if isinstance(raw, bytes) else raw))
    return min(keep)


async def trim(redis: Redis, keys: Keys, database_url: str) -> int:
    """Trim every partition; returns how many entries were deleted."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT partition, last_ms, last_seq FROM projection_checkpoints "
            "WHERE projection = 'projector'")
    finally:
        await connection.close()
    checkpoints = {r["partition"]: f"{r['last_ms']}-{r['last_seq']}" for r in rows}
    deleted = 0
    for partition in range(keys.partitions):
        stream = keys.stream(partition)
        if not await redis.exists(stream):
            continue
        point = await trim_point(redis, stream, checkpoints.get(partition))
        if point is None:
            continue
        removed = int(await redis.execute_command(
            "XTRIM", stream, "MINID", f"{point[0]}-{point[1]}"))
        deleted += removed
        log.info("stream trimmed", extra={"fields": {"stream": stream, "deleted": removed,
                                                     "kept_from": f"{point[0]}-{point[1]}"}})
    return deleted
