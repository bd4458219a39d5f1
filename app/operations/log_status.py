"""``mecove status``: per group lag, pending, oldest pending age, consumers; DLQ size;
projector checkpoint against the stream tail. Works on Redis 6.2 (no ``lag`` field) and 7.x.
"""

from __future__ import annotations

import asyncpg
import msgspec
from redis.asyncio import Redis

from app.platform.checkpoints import read_checkpoints_at
from app.platform.eventlog.entries import as_text, entry_id_of
from app.platform.eventlog.keys import Keys

LAG_COUNT_CAP = 100_000


class ConsumerStatus(msgspec.Struct):
    name: str
    pending: int
    idle_ms: int


class GroupStatus(msgspec.Struct):
    group: str
    partition: int
    lag: int | None
    pending: int
    oldest_pending_age_ms: int | None
    last_delivered_id: str
    consumers: list[ConsumerStatus]


class PartitionStatus(msgspec.Struct):
    partition: int
    stream: str
    length: int
    tail_id: str | None
    projector_checkpoint: str | None
    dead_letters: int


class LogStatus(msgspec.Struct):
    partitions: list[PartitionStatus]
    groups: list[GroupStatus]
    # From PostgreSQL (None without a database): messages kept raw and not yet recovered,
    # replies Meta reported as failed, by error code.
    unreadable_messages: int | None = None
    failed_deliveries: dict[str, int] | None = None


async def _lag(redis: Redis, stream: str, info: dict) -> int | None:
    if info.get("lag") is not None:
        return int(info["lag"])
    # Redis 6.2: count the entries after last-delivered-id, capped.
    last = as_text(info["last-delivered-id"]) or "0-0"
    entries = await redis.xrange(stream, min=f"({last}", max="+", count=LAG_COUNT_CAP)
    return len(entries)


async def _problem_counts(database_url: str) -> tuple[int, dict[str, int]]:
    """Unreadable messages not yet recovered; replies Meta reported failed, by error code."""
    connection = await asyncpg.connect(database_url)
    try:
        unreadable = int(await connection.fetchval(
            "SELECT count(*) FROM unreadable_messages "
            "WHERE recovered_message_id IS NULL AND reason IS NOT NULL"))
        failed = {str(r["error_code"]): int(r["n"]) for r in await connection.fetch(
            "SELECT error_code, count(*) AS n FROM delivery_statuses "
            "WHERE status = 'failed' GROUP BY error_code ORDER BY error_code")}
    finally:
        await connection.close()
    return unreadable, failed


async def read_status(redis: Redis, keys: Keys, database_url: str | None) -> LogStatus:
    checkpoints = await read_checkpoints_at(database_url) if database_url else {}
    unreadable: int | None = None
    failed: dict[str, int] | None = None
    if database_url:
        unreadable, failed = await _problem_counts(database_url)
    partitions: list[PartitionStatus] = []
    groups: list[GroupStatus] = []
    for partition in range(keys.partitions):
        stream = keys.stream(partition)
        exists = await redis.exists(stream)
        tail = await redis.xrevrange(stream, count=1) if exists else []
        partitions.append(PartitionStatus(
            partition=partition, stream=stream,
            length=int(await redis.xlen(stream)) if exists else 0,
            tail_id=as_text(tail[0][0]) if tail else None,
            projector_checkpoint=entry_id_of(checkpoints[partition])
            if partition in checkpoints else None,
            dead_letters=int(await redis.xlen(keys.dead_letters(partition))),
        ))
        if not exists:
            continue
        for info in await redis.xinfo_groups(stream):
            name = as_text(info["name"]) or ""
            oldest_age = None
            if int(info["pending"]):
                first = await redis.xpending_range(stream, name, min="-", max="+", count=1)
                if first:
                    oldest_age = int(first[0]["time_since_delivered"])
            consumers = [
                ConsumerStatus(name=as_text(c["name"]) or "", pending=int(c["pending"]),
                               idle_ms=int(c["idle"]))
                for c in await redis.xinfo_consumers(stream, name)
            ]
            groups.append(GroupStatus(
                group=name, partition=partition, lag=await _lag(redis, stream, info),
                pending=int(info["pending"]), oldest_pending_age_ms=oldest_age,
                last_delivered_id=as_text(info["last-delivered-id"]) or "0-0",
                consumers=consumers,
            ))
    return LogStatus(partitions=partitions, groups=groups, unreadable_messages=unreadable,
                     failed_deliveries=failed)


def format_status(status: LogStatus) -> str:
    """A human-readable table."""
    lines = []
    for p in status.partitions:
        lines.append(
            f"partition {p.partition}  stream {p.stream}  length {p.length}  tail {p.tail_id}  "
            f"projector checkpoint {p.projector_checkpoint}  dead letters {p.dead_letters}")
    lines.append("")
    header = f"{'group':<12} {'part':>4} {'lag':>8} {'pending':>8} {'oldest ms':>10}  consumers"
    lines.append(header)
    for g in status.groups:
        consumers = ", ".join(f"{c.name} (pending {c.pending}, idle {c.idle_ms} ms)"
                              for c in g.consumers) or "-"
        oldest = "-" if g.oldest_pending_age_ms is None else str(g.oldest_pending_age_ms)
        lag = "?" if g.lag is None else str(g.lag)
        lines.append(f"{g.group:<12} {g.partition:>4} {lag:>8} {g.pending:>8} {oldest:>10}  "
                     f"{consumers}")
    if status.unreadable_messages is not None:
        lines.append("")
        lines.append(f"unreadable messages kept raw (recovered by `mecove replay` once readable): "
                     f"{status.unreadable_messages}")
    if status.failed_deliveries is not None:
        failed = ", ".join(f"code {code}: {n}" for code, n in status.failed_deliveries.items())
        total = sum(status.failed_deliveries.values())
        lines.append(f"replies Meta reported failed: {total}"
                     + (f" ({failed})" if failed else ""))
    return "\n".join(lines)
