"""``mecove trim``: delete stream entries only once archived and acknowledged by every group.

The oldest entry that must stay is the earliest of: each group's oldest pending entry, the
entry after each group's last-delivered id, and the entry after the projector's checkpoint
(everything at or below it is in the event archive). ``XTRIM MINID`` keeps it and all after.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from app.platform.checkpoints import read_checkpoints_at
from app.platform.eventlog.entries import Position, as_text, entry_id_of, entry_position
from app.platform.eventlog.keys import Keys

log = logging.getLogger("mecove.trim")


def _after(position: Position) -> Position:
    """The smallest position after ``position``."""
    return position[0], position[1] + 1


async def trim_point(redis: Redis, stream: str, checkpoint: Position | None) -> Position | None:
    """The smallest entry position that must be kept, or None when nothing may be trimmed."""
    if checkpoint is None:
        return None  # nothing is known to be archived
    keep = [_after(checkpoint)]
    for info in await redis.xinfo_groups(stream):
        group = as_text(info["name"])
        keep.append(_after(entry_position(as_text(info["last-delivered-id"]))))
        if int(info["pending"]):
            first = await redis.xpending_range(stream, group, min="-", max="+", count=1)
            if first:
                keep.append(entry_position(as_text(first[0]["message_id"])))
    return min(keep)


async def trim(redis: Redis, keys: Keys, database_url: str) -> int:
    """Trim every partition; returns how many entries were deleted."""
    checkpoints = await read_checkpoints_at(database_url)
    deleted = 0
    for partition in range(keys.partitions):
        stream = keys.stream(partition)
        if not await redis.exists(stream):
            continue
        point = await trim_point(redis, stream, checkpoints.get(partition))
        if point is None:
            continue
        kept_from = entry_id_of(point)
        removed = int(await redis.execute_command("XTRIM", stream, "MINID", kept_from))
        deleted += removed
        log.info("stream trimmed", extra={"fields": {"stream": stream, "deleted": removed,
                                                     "kept_from": kept_from}})
    return deleted
