"""Operations on a whole consumer group that need no handler: create it, measure it, tidy it."""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.platform.eventlog.entries import as_text
from app.platform.eventlog.keys import Keys
from app.platform.metrics import GROUP_LAG, GROUP_PENDING

log = logging.getLogger("mecove.consumer")


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the group at the start of the stream (nothing appended earlier is skipped)."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def update_group_gauges(redis: Redis, keys: Keys, group: str) -> None:
    """Set the lag and pending gauges of ``group``, summed over every partition."""
    lag = pending = 0
    for partition in range(keys.partitions):
        for info in await redis.xinfo_groups(keys.stream(partition)):
            if as_text(info["name"]) == group:
                pending += int(info.get("pending") or 0)
                lag += int(info.get("lag") or 0)  # absent on Redis 6.2: reported as 0
    GROUP_LAG.labels(group).set(lag)
    GROUP_PENDING.labels(group).set(pending)


async def remove_idle_consumers(
    redis: Redis, stream: str, group: str, *, keep: str, idle_ms: int
) -> None:
    """Forget consumers of ``group`` on ``stream`` that own nothing and were silent for more
    than ``idle_ms``; ``keep`` (the caller's own name) is never removed."""
    for info in await redis.xinfo_consumers(stream, group):
        name = as_text(info["name"])
        if name != keep and int(info["pending"]) == 0 and int(info["idle"]) > idle_ms:
            await redis.xgroup_delconsumer(stream, group, name)
            log.info("removed idle consumer", extra={"fields": {"group": group,
                                                                "consumer": name}})
