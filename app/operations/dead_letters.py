"""``mecove dlq``: list, show, retry and drop dead-lettered entries.

A retry puts the original event back in the stream with ``only_group`` set, so only the
group that gave up on it handles it again, with a fresh attempt count (a new entry).
"""

from __future__ import annotations

import logging

import msgspec
from redis.asyncio import Redis

from app.platform.eventlog.entries import (
    BODY,
    EVENT_ID,
    ONLY_GROUP,
    RETRY_OF,
    as_text,
    from_dead_letter_copy,
)
from app.platform.eventlog.keys import Keys

log = logging.getLogger("mecove.dlq")


class DeadLetter(msgspec.Struct):
    dlq_id: str
    partition: int
    entry_id: str
    group: str
    attempts: int
    error: str
    at: int
    event_type: str | None
    event_id: str | None


def _s(fields: dict[bytes, bytes], name: str) -> str | None:
    value = fields.get(name.encode())
    return value.decode(errors="replace") if value is not None else None


def _to_dead_letter(partition: int, dlq_id: bytes | str, fields: dict[bytes, bytes]
                    ) -> DeadLetter:
    return DeadLetter(
        dlq_id=as_text(dlq_id),
        partition=partition,
        entry_id=_s(fields, "entry_id") or "",
        group=_s(fields, "group") or "",
        attempts=int(_s(fields, "attempts") or 0),
        error=_s(fields, "error") or "",
        at=int(_s(fields, "at") or 0),
        event_type=_s(fields, "event_type"),
        event_id=_s(fields, "event_id"),
    )


async def list_dead_letters(redis: Redis, keys: Keys, *, after: str | None = None,
                            count: int | None = None) -> list[DeadLetter]:
    """Dead letters of every partition, oldest first; with ``after`` / ``count``, one page:
    at most ``count`` letters (per partition) whose id is above ``after``."""
    out: list[DeadLetter] = []
    for partition in range(keys.partitions):
        entries = await redis.xrange(keys.dead_letters(partition),
                                     min=f"({after}" if after else "-", count=count)
        for dlq_id, fields in entries:
            out.append(_to_dead_letter(partition, dlq_id, fields))
    return out


async def _find(redis: Redis, keys: Keys, dlq_id: str) -> tuple[int, dict[bytes, bytes]] | None:
    for partition in range(keys.partitions):
        found = await redis.xrange(keys.dead_letters(partition), min=dlq_id, max=dlq_id)
        if found:
            return partition, found[0][1]
    return None


async def show_dead_letter(redis: Redis, keys: Keys, dlq_id: str) -> dict[str, str] | None:
    found = await _find(redis, keys, dlq_id)
    if found is None:
        return None
    return {k.decode(): v.decode(errors="replace") for k, v in found[1].items()}


async def retry_dead_letter(redis: Redis, keys: Keys, dlq_id: str) -> str | None:
    """Re-append the original event for its group only; remove it from the DLQ. New entry id."""
    found = await _find(redis, keys, dlq_id)
    if found is None:
        return None
    partition, fields = found
    event = from_dead_letter_copy(fields)
    if BODY not in event:
        raise ValueError(f"dead letter {dlq_id} carries no original event to retry")
    event[ONLY_GROUP] = fields[b"group"]
    event[RETRY_OF] = fields.get(b"entry_id", b"")
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(keys.stream(partition), event)
        pipe.xdel(keys.dead_letters(partition), dlq_id)
        new_id, _ = await pipe.execute()
    entry_id = as_text(new_id)
    log.info("dead letter retried", extra={"fields": {
        "dlq_id": dlq_id, "entry_id": entry_id, "group": fields[b"group"].decode(),
        "event_id": event.get(EVENT_ID, b"").decode()}})
    return entry_id


async def drop_dead_letter(redis: Redis, keys: Keys, dlq_id: str) -> bool:
    found = await _find(redis, keys, dlq_id)
    if found is None:
        return False
    await redis.xdel(keys.dead_letters(found[0]), dlq_id)
    log.info("dead letter dropped", extra={"fields": {"dlq_id": dlq_id}})
    return True
