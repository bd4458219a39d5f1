"""The one consumer-group runtime every group shares: read, handle, ack, retry, reclaim,
dead-letter, shut down. Handlers (projector, replier, summarizer) plug into it.

* New entries come from XREADGROUP, in batches, on a dedicated connection per partition.
* A failed entry stays pending; its id goes into a retry schedule (a ZSET scored by due time)
  with an exponential backoff driven by its delivery count; when due, a live consumer takes it
  with XCLAIM (which bumps the delivery count) and handles it again.
* After the last attempt, or at once for a NonRetryableError or an undecodable event, the
  entry is copied to the dead-letter stream with the reason and acknowledged.
* Entries of a consumer that died are taken over with XCLAIM once idle for the visibility
  timeout (found with XPENDING ... IDLE, which Redis 6.2 and 7.x both have).
* Exclusive handlers (the projector) hold a lease per partition, adopt every pending entry when
  they get it, and retry a failed batch in place, because a projection must apply in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from app.platform.eventlog.entries import UndecodableEvent, decode_event
from app.platform.eventlog.keys import Keys
from app.platform.metrics import (
    DEAD_LETTERED,
    FAILED,
    GROUP_LAG,
    GROUP_PENDING,
    HANDLER_SECONDS,
    PROCESSED,
    RETRIED,
)
from app.platform.redis_client import open_blocking_reader
from app.platform.runtime.retry_policy import NonRetryableError, RetryPolicy
from schema.events import AnyEvent

log = logging.getLogger("mecove.consumer")

Fields = dict[bytes, bytes]


@dataclass(slots=True)
class Delivery:
    """One event handed to a handler, with its 1-based attempt number."""

    partition: int
    entry_id: str
    event: AnyEvent
    attempt: int
    operator_retry: bool = False  # put back by `mecove dlq retry`


class GroupHandler(Protocol):
    group: str
    exclusive: bool

    async def acquire_partition(self, partition: int, stop: asyncio.Event) -> bool:
        """Exclusive handlers: wait for the partition's lease; False when stopping."""
        ...

    async def release_partition(self, partition: int) -> None: ...

    async def handle(self, deliveries: list[Delivery]) -> Sequence[BaseException | None]:
        """Handle a batch; one outcome per delivery (None = done). May raise for all."""
        ...

    async def on_dead_letter(self, delivery: Delivery, error: BaseException | str) -> None:
        """Called once an entry is given up on (e.g. the replier appends ReplyFailed)."""
        ...


class SharedPartitionsHandler:
    """Base of handlers whose group spreads every partition over all its consumers."""

    exclusive = False

    async def acquire_partition(self, partition: int, stop: asyncio.Event) -> bool:
        return True

    async def release_partition(self, partition: int) -> None:
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def ensure_group(redis: Redis, stream: str, group: str) -> None:
    """Create the group at the start of the stream (nothing appended earlier is skipped)."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class ConsumerGroupRuntime:
    def __init__(
        self,
        *,
        redis: Redis,
        redis_url: str,
        keys: Keys,
        handler: GroupHandler,
        consumer_name: str,
        policy: RetryPolicy,
        batch_size: int = 100,
        block_ms: int = 1_000,
        visibility_timeout_ms: int = 60_000,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.redis = redis
        self.redis_url = redis_url
        self.keys = keys
        self.handler = handler
        self.group = handler.group
        self.consumer = consumer_name
        self.policy = policy
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.visibility_timeout_ms = visibility_timeout_ms
        self.clock_ms = clock_ms
        self.stop = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume every partition until ``request_stop``; in-flight batches finish first."""
        for partition in range(self.keys.partitions):
            await self._with_redis_retry(
                lambda p=partition: ensure_group(self.redis, self.keys.stream(p), self.group)
            )
        tasks = [asyncio.create_task(self._partition_loop(p)) for p in range(self.keys.partitions)]
        tasks.append(asyncio.create_task(self._maintenance_loop()))
        log.info("consumer started", extra={"fields": {"group": self.group,
                                                        "consumer": self.consumer}})
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            log.info("consumer stopped", extra={"fields": {"group": self.group,
                                                            "consumer": self.consumer}})

    def request_stop(self) -> None:
        self.stop.set()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when asked to stop."""
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _with_redis_retry(self, action: Callable[[], object]) -> None:
        while not self.stop.is_set():
            try:
                await action()  # type: ignore[misc]
                return
            except (RedisError, OSError) as exc:
                log.warning("redis unavailable, retrying",
                            extra={"fields": {"group": self.group, "error": type(exc).__name__}})
                await self._sleep(1.0)

    # -- reading ---------------------------------------------------------------------------

    async def _partition_loop(self, partition: int) -> None:
        stream = self.keys.stream(partition)
        if self.handler.exclusive:
            if not await self.handler.acquire_partition(partition, self.stop):
                return
        reader = open_blocking_reader(self.redis_url, block_ms=self.block_ms)
        try:
            if self.handler.exclusive:
                await self._with_redis_retry(lambda: self._adopt_all_pending(partition))
            while not self.stop.is_set():
                try:
                    response = await reader.xreadgroup(
                        self.group, self.consumer, {stream: ">"},
                        count=self.batch_size, block=self.block_ms,
                    )
                except (RedisError, OSError) as exc:
                    if self.stop.is_set():
                        break
                    log.warning("read failed, retrying",
                                extra={"fields": {"group": self.group,
                                                  "error": type(exc).__name__}})
                    await self._sleep(1.0)
                    continue
                for _stream, entries in response or ():
                    await self._process(partition, [(e[0], e[1], 1) for e in entries])
        finally:
            await reader.aclose()
            if self.handler.exclusive:
                await self.handler.release_partition(partition)

    async def _adopt_all_pending(self, partition: int) -> None:
        """Exclusive handlers: take every pending entry of the group, oldest first, and apply."""
        stream = self.keys.stream(partition)
        start = "-"
        while not self.stop.is_set():
            pending = await self.redis.xpending_range(
                stream, self.group, min=start, max="+", count=self.batch_size
            )
            if not pending:
                return
            await self._claim_and_process(partition, pending, min_idle_ms=0)
            last = _text(pending[-1]["message_id"])
            start = "(" + last

    async def _claim_and_process(
        self, partition: int, pending: list[dict[str, object]], *, min_idle_ms: int
    ) -> None:
        stream = self.keys.stream(partition)
        previous = {_text(p["message_id"]): int(p["times_delivered"]) for p in pending}  # type: ignore[call-overload]
        claimed = await self.redis.xclaim(
            stream, self.group, self.consumer, min_idle_ms, list(previous)
        )
        batch: list[tuple[bytes | str | None, Fields | None, int]] = []
        for entry_id, fields in claimed:
            if entry_id is None:
                continue
            batch.append((entry_id, fields, previous.get(_text(entry_id), 0) + 1))
        claimed_ids = {_text(e[0]) for e in batch if e[0] is not None}
        # Ids still pending but gone from the stream (trimmed): nothing left to do but ack.
        vanished = [i for i in previous if i not in claimed_ids and min_idle_ms == 0]
        if vanished:
            await self.redis.xack(stream, self.group, *vanished)
        if batch:
            await self._process(partition, batch)

    # -- handling --------------------------------------------------------------------------

    async def _process(
        self, partition: int, entries: list[tuple[bytes | str | None, Fields | None, int]]
    ) -> None:
        stream = self.keys.stream(partition)
        deliveries: list[Delivery] = []
        for raw_id, fields, attempt in entries:
            entry_id = _text(raw_id) if raw_id is not None else ""
            if not fields:
                await self.redis.xack(stream, self.group, entry_id)
                continue
            only_group = fields.get(b"only_group")
            if only_group is not None and only_group.decode() != self.group:
                await self.redis.xack(stream, self.group, entry_id)  # a retry for another group
                continue
            try:
                event = decode_event(fields)
            except UndecodableEvent as exc:
                await self._dead_letter(partition, entry_id, fields, attempt, f"undecodable: {exc}")
                continue
            deliveries.append(Delivery(partition, entry_id, event, attempt,
                                       operator_retry=only_group is not None))
        while deliveries and not (self.handler.exclusive and self.stop.is_set()):
            started = time.perf_counter()
            outcomes = await self._handle(deliveries)
            HANDLER_SECONDS.labels(self.group).observe(time.perf_counter() - started)
            done = [d.entry_id for d, o in zip(deliveries, outcomes, strict=True) if o is None]
            if done:
                await self.redis.xack(stream, self.group, *done)
                PROCESSED.labels(self.group).inc(len(done))
            failed = [(d, o) for d, o in zip(deliveries, outcomes, strict=True) if o is not None]
            if failed:
                FAILED.labels(self.group).inc(len(failed))
            deliveries = []
            for delivery, error in failed:
                if self.handler.exclusive and not isinstance(error, NonRetryableError):
                    deliveries.append(delivery)  # retried in place: order matters
                    continue
                await self._after_failure(delivery, error, entries_fields=entries)
            if deliveries:
                attempt = max(d.attempt for d in deliveries)
                for d in deliveries:
                    d.attempt += 1
                delay = self.policy.delay_ms(attempt) / 1000
                log.warning("batch failed, retrying in place",
                            extra={"fields": {"group": self.group, "delay_s": delay,
                                              "error": _describe(failed[0][1])}})
                await self._sleep(delay)

    async def _handle(self, deliveries: list[Delivery]) -> Sequence[BaseException | None]:
        heartbeat = asyncio.create_task(self._keep_claimed(deliveries))
        try:
            outcomes = await self.handler.handle(deliveries)
        except Exception as exc:  # noqa: BLE001 - any handler failure is an outcome
            return [exc] * len(deliveries)
        finally:
            heartbeat.cancel()
        return outcomes

    async def _keep_claimed(self, deliveries: list[Delivery]) -> None:
        """While a batch is being handled, reset its entries' idle time (XCLAIM JUSTID, which
        leaves the delivery count alone), so a live but slow consumer is never robbed by the
        visibility-timeout reclaim of a peer."""
        interval = self.visibility_timeout_ms / 3000
        while True:
            await asyncio.sleep(interval)
            by_partition: dict[int, list[str]] = {}
            for delivery in deliveries:
                by_partition.setdefault(delivery.partition, []).append(delivery.entry_id)
            for partition, ids in by_partition.items():
                try:
                    await self.redis.xclaim(self.keys.stream(partition), self.group,
                                            self.consumer, 0, ids, justid=True)
                except (RedisError, OSError):
                    pass  # the next beat tries again

    async def _after_failure(
        self,
        delivery: Delivery,
        error: BaseException,
        entries_fields: list[tuple[bytes | str | None, Fields | None, int]],
    ) -> None:
        reason = _describe(error)
        fields = next(
            (f for i, f, _ in entries_fields if i is not None and _text(i) == delivery.entry_id),
            None,
        ) or {}
        if self.policy.gives_up_after(delivery.attempt, error):
            await self._dead_letter(delivery.partition, delivery.entry_id, fields,
                                    delivery.attempt, reason)
            await self.handler.on_dead_letter(delivery, error)
            return
        due = self.clock_ms() + self.policy.delay_ms(delivery.attempt)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.last_error(delivery.partition, self.group),
                      delivery.entry_id, reason)
            pipe.zadd(self.keys.retry_schedule(delivery.partition, self.group),
                      {delivery.entry_id: due})
            await pipe.execute()
        RETRIED.labels(self.group).inc()
        log.warning("attempt failed, retry scheduled",
                    extra={"fields": {"group": self.group, "entry_id": delivery.entry_id,
                                      "event_id": delivery.event.event_id,
                                      "message_id": getattr(delivery.event, "message_id", None),
                                      "attempt": delivery.attempt, "error": reason}})

    async def _dead_letter(
        self, partition: int, entry_id: str, fields: Fields, attempts: int, reason: str
    ) -> None:
        """Copy the entry to the dead-letter stream with why, and acknowledge it, atomically."""
        stream = self.keys.stream(partition)
        record: dict[bytes | str, bytes | str | int] = {
            "entry_id": entry_id,
            "stream": stream,
            "group": self.group,
            "attempts": attempts,
            "error": reason,
            "at": self.clock_ms(),
        }
        for name in (b"type", b"v", b"id", b"at", b"body"):
            if name in fields:
                record[b"event_" + name] = fields[name]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.dead_letters(partition), record)
            pipe.xack(stream, self.group, entry_id)
            pipe.hdel(self.keys.last_error(partition, self.group), entry_id)
            pipe.zrem(self.keys.retry_schedule(partition, self.group), entry_id)
            await pipe.execute()
        DEAD_LETTERED.labels(self.group).inc()
        log.error("dead-lettered", extra={"fields": {"group": self.group, "entry_id": entry_id,
                                                     "attempts": attempts, "error": reason}})

    # -- retries and reclaim ---------------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        tick = min(0.25, self.policy.base_delay_ms / 4000)
        last_cleanup = last_gauges = 0.0
        while not self.stop.is_set():
            try:
                if not self.handler.exclusive:
                    for partition in range(self.keys.partitions):
                        await self._run_due_retries(partition)
                        await self._reclaim_abandoned(partition)
                if time.monotonic() - last_gauges > 5:
                    last_gauges = time.monotonic()
                    await self._update_gauges()
                if time.monotonic() - last_cleanup > 60:
                    last_cleanup = time.monotonic()
                    for partition in range(self.keys.partitions):
                        await self._remove_dead_consumers(partition)
            except (RedisError, OSError) as exc:
                log.warning("maintenance failed, retrying",
                            extra={"fields": {"group": self.group, "error": type(exc).__name__}})
            await self._sleep(max(tick, 0.01))

    async def _run_due_retries(self, partition: int) -> None:
        schedule = self.keys.retry_schedule(partition, self.group)
        due = await self.redis.zrangebyscore(
            schedule, "-inf", self.clock_ms(), start=0, num=self.batch_size
        )
        mine: list[str] = []
        for raw in due:
            if await self.redis.zrem(schedule, raw):  # only one consumer wins each retry
                mine.append(_text(raw))
        if not mine:
            return
        stream = self.keys.stream(partition)
        pending: list[dict[str, object]] = []
        for entry_id in mine:
            pending += await self.redis.xpending_range(
                stream, self.group, min=entry_id, max=entry_id, count=1
            )
        if pending:
            await self._claim_and_process(partition, pending, min_idle_ms=0)

    async def _reclaim_abandoned(self, partition: int) -> None:
        """Entries idle past the visibility timeout belong to a dead or stuck consumer."""
        stream = self.keys.stream(partition)
        pending = await self.redis.xpending_range(
            stream, self.group, min="-", max="+", count=self.batch_size,
            idle=self.visibility_timeout_ms,
        )
        if not pending:
            return
        scheduled = self.keys.retry_schedule(partition, self.group)
        candidates = []
        for item in pending:
            if _text(item["consumer"]) == self.consumer:
                continue  # our own in-flight work, or a failure already in the retry schedule
            if await self.redis.zscore(scheduled, item["message_id"]) is None:
                candidates.append(item)
        exhausted = [p for p in candidates if int(p["times_delivered"]) >= self.policy.max_attempts]  # type: ignore[call-overload]
        for item in exhausted:
            entry_id = _text(item["message_id"])
            claimed = await self.redis.xclaim(stream, self.group, self.consumer,
                                              self.visibility_timeout_ms, [entry_id])
            if claimed and claimed[0][0] is not None:
                fields = claimed[0][1] or {}
                raw_reason = await self.redis.hget(self.keys.last_error(partition, self.group),
                                                   entry_id)
                reason = _text(raw_reason) if raw_reason else "consumer died on its last attempt"
                attempts = int(item["times_delivered"])  # type: ignore[call-overload]
                await self._dead_letter(partition, entry_id, fields, attempts, reason)
                try:
                    event = decode_event(fields)
                except UndecodableEvent:
                    continue
                await self.handler.on_dead_letter(
                    Delivery(partition, entry_id, event, attempts), reason
                )
        rest = [p for p in candidates if p not in exhausted]
        if rest:
            log.warning("reclaiming entries of a dead consumer",
                        extra={"fields": {"group": self.group, "count": len(rest)}})
            await self._claim_and_process(partition, rest, min_idle_ms=self.visibility_timeout_ms)

    async def _update_gauges(self) -> None:
        lag = pending = 0
        for partition in range(self.keys.partitions):
            for info in await self.redis.xinfo_groups(self.keys.stream(partition)):
                if _text(info["name"]) == self.group:
                    pending += int(info.get("pending") or 0)
                    lag += int(info.get("lag") or 0)  # absent on Redis 6.2: reported as 0
        GROUP_LAG.labels(self.group).set(lag)
        GROUP_PENDING.labels(self.group).set(pending)

    async def _remove_dead_consumers(self, partition: int) -> None:
        """Forget consumers that own nothing and have been silent for ten visibility timeouts."""
        stream = self.keys.stream(partition)
        for info in await self.redis.xinfo_consumers(stream, self.group):
            name = _text(info["name"])
            if (name != self.consumer and int(info["pending"]) == 0
                    and int(info["idle"]) > 10 * self.visibility_timeout_ms):
                await self.redis.xgroup_delconsumer(stream, self.group, name)
                log.info("removed idle consumer", extra={"fields": {"group": self.group,
                                                                    "consumer": name}})


def _describe(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:500]
