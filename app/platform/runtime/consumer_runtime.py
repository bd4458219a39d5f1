"""What both consumer-group runtimes share: read, decode, handle, ack, dead-letter, shut down.

* New entries come from XREADGROUP, in batches, on a dedicated blocking connection per
  partition, whose replies come unparsed: an entry holding just the event's fields becomes a
  ``Delivery`` in one step, with no dict of its fields (``_read_deliveries``, decision 0022).
* An entry without fields (trimmed) or a retry meant for another group is acknowledged; one
  that does not decode is dead-lettered at once; the rest reach the handler as ``Delivery``.
* While a batch is handled a heartbeat keeps its entries claimed, so no peer reclaims them.
* Dead-lettering copies the entry to the dead-letter stream with the reason and acknowledges
  it, in one MULTI.
* ``request_stop`` ends reading; a batch being handled finishes and is acknowledged first.

The two modes are the subclasses: ``SharedRuntime`` (retry schedule, reclaim, dead letter after
the last attempt) and ``OrderedRuntime`` (a lease per partition, failed batches retried in place).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import msgspec
from redis.asyncio import Redis, RedisCluster

from app.platform.clock import now_ms
from app.platform.eventlog.entries import (
    BODY,
    ONLY_GROUP,
    RawEntry,
    UndecodableEvent,
    as_text,
    dead_letter_copy,
    decode_event,
    fields_of,
    reply_entries,
    standard_body,
)
from app.platform.eventlog.keys import Keys
from app.platform.metrics import DEAD_LETTERED, FAILED, HANDLER_SECONDS, PROCESSED
from app.platform.redis_client import REDIS_ERRORS, open_blocking_reader
from app.platform.runtime.consumer_group import (
    ensure_group,
    remove_idle_consumers,
    update_group_gauges,
)
from app.platform.runtime.handler import Delivery, GroupHandler
from app.platform.runtime.retry_policy import RetryPolicy
from schema.events import decode_body

log = logging.getLogger("mecove.consumer")

Fields = dict[bytes, bytes]
Entry = tuple[bytes | str | None, Fields | None, int]
"""A stream entry to process: its id, its fields (None once trimmed) and its attempt number."""
Failure = tuple[Delivery, BaseException]

HandlerT = TypeVar("HandlerT", bound=GroupHandler)

GAUGES_EVERY_S = 5.0
# ``_deliveries`` decodes this many entries at a time, then yields to the event loop, so
# decoding a large read ahead does not hold up the batch being written (ordered_runtime).
DECODE_YIELD_EVERY = 200
IDLE_CONSUMERS_EVERY_S = 60.0


class ConsumerRuntime(ABC, Generic[HandlerT]):
    """One consumer of ``handler.group`` on every partition of ``keys``."""

    def __init__(
        self,
        *,
        redis: Redis,
        redis_url: str,
        keys: Keys,
        handler: HandlerT,
        consumer_name: str,
        policy: RetryPolicy,
        batch_size: int = 100,
        block_ms: int = 1_000,
        visibility_timeout_ms: int = 60_000,
        clock_ms: Callable[[], int] = now_ms,
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

    async def run(self) -> None:
        """Consume every partition until ``request_stop``; in-flight batches finish first."""
        for partition in range(self.keys.partitions):
            await self._with_redis_retry(
                lambda p=partition: ensure_group(self.redis, self.keys.stream(p), self.group)
            )
        tasks = [asyncio.create_task(self._consume_partition(p))
                 for p in range(self.keys.partitions)]
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
        """Stop reading; ``run`` returns once the batches being handled are settled."""
        self.stop.set()

    # -- what each mode defines ------------------------------------------------------------

    @abstractmethod
    async def _consume_partition(self, partition: int) -> None:
        """Everything this consumer does on one partition until it is asked to stop."""

    @abstractmethod
    async def _process(self, partition: int, entries: list[Entry]) -> None:
        """Handle entries just read or claimed, and settle each (ack, retry, dead letter)."""

    async def _maintain(self) -> None:
        """The mode's work on every maintenance tick (retries, reclaim); none by default."""
        return None

    # -- reading ---------------------------------------------------------------------------

    async def _read_new(self, partition: int) -> None:
        """Read never-delivered entries of the partition and process them, until stopped."""
        stream = self.keys.stream(partition)
        reader = open_blocking_reader(self.redis_url, block_ms=self.block_ms,
                                      cluster=isinstance(self.redis, RedisCluster))
        try:
            while not self.stop.is_set():
                count = await self._read_capacity()
                if self.stop.is_set():
                    break  # asked to stop while waiting for room
                try:
                    response = await reader.xreadgroup(
                        self.group, self.consumer, {stream: ">"},
                        count=count, block=self.block_ms,
                    )
                except REDIS_ERRORS as exc:
                    if self.stop.is_set():
                        break
                    log.warning("read failed, retrying",
                                extra={"fields": {"group": self.group,
                                                  "error": type(exc).__name__}})
                    await self._sleep(1.0)
                    continue
                entries = reply_entries(response)
                if entries:
                    await self._accept(partition, first_deliveries(entries))
        finally:
            try:
                await self._settle_accepted()
            finally:
                await reader.aclose()

    async def _read_capacity(self) -> int:
        """How many entries the next read may take (waiting while it is none): a batch, as
        the previous one is settled before the next read."""
        return self.batch_size

    async def _accept(self, partition: int, entries: list[Entry]) -> None:
        """Entries just read: processed before the next read (a mode may overlap them)."""
        await self._process(partition, entries)

    async def _settle_accepted(self) -> None:
        """On leaving the read loop: wait for accepted entries still being processed."""
        return None

    async def _claim_and_process(
        self, partition: int, pending: list[dict[str, object]], *, min_idle_ms: int
    ) -> None:
        """Take ``pending`` (XPENDING rows) over with XCLAIM and process what was claimed."""
        stream = self.keys.stream(partition)
        previous = {as_text(p["message_id"]): int(p["times_delivered"]) for p in pending}  # type: ignore[call-overload]
        claimed = await self.redis.xclaim(
            stream, self.group, self.consumer, min_idle_ms, list(previous)
        )
        batch: list[Entry] = []
        for entry_id, fields in claimed:
            if entry_id is None:
                continue
            batch.append((entry_id, fields, previous.get(as_text(entry_id), 0) + 1))
        claimed_ids = {as_text(e[0]) for e in batch if e[0] is not None}
        # Ids still pending but gone from the stream (trimmed): nothing left to do but ack.
        vanished = [i for i in previous if i not in claimed_ids and min_idle_ms == 0]
        if vanished:
            await self.redis.xack(stream, self.group, *vanished)
        if batch:
            await self._process(partition, batch)

    async def _deliveries(self, partition: int, entries: list[Entry]) -> list[Delivery]:
        """Decode entries for the handler; settle at once those it must never see."""
        deliveries: list[Delivery] = []
        for start in range(0, len(entries), DECODE_YIELD_EVERY):
            if start:
                await asyncio.sleep(0)
            for raw_id, fields, attempt in entries[start:start + DECODE_YIELD_EVERY]:
                entry_id = as_text(raw_id) if raw_id is not None else ""
                delivery = await self._delivery(partition, entry_id, fields, attempt)
                if delivery is not None:
                    deliveries.append(delivery)
        return deliveries

    async def _read_deliveries(self, partition: int, entries: list[RawEntry]) -> list[Delivery]:
        """``_deliveries`` of entries just read, as the unparsed reply holds them (first
        delivery each): one holding just the event's fields at this schema version is decoded
        from its body at once; any other, or a body that does not decode, goes the general way
        (``_delivery``), which settles or dead-letters it exactly as for a claimed entry."""
        deliveries: list[Delivery] = []
        append = deliveries.append
        for start in range(0, len(entries), DECODE_YIELD_EVERY):
            if start:
                await asyncio.sleep(0)
            for raw_id, pairs in entries[start:start + DECODE_YIELD_EVERY]:
                body = standard_body(pairs) if pairs else None
                if body is not None:
                    try:
                        append(Delivery(partition, raw_id.decode(), decode_body(body), 1,
                                        False, body))
                        continue
                    except msgspec.DecodeError:
                        pass  # ``_delivery`` dead-letters it, with decode_event's reason
                delivery = await self._delivery(partition, as_text(raw_id), fields_of(pairs), 1)
                if delivery is not None:
                    append(delivery)
        return deliveries

    async def _delivery(self, partition: int, entry_id: str, fields: Fields | None,
                        attempt: int) -> Delivery | None:
        """The delivery of one entry, or None once settled here: acknowledged when trimmed or
        a retry meant for another group, dead-lettered when it does not decode."""
        if not fields:
            await self.redis.xack(self.keys.stream(partition), self.group, entry_id)
            return None
        only_group = fields.get(ONLY_GROUP)
        if only_group is not None and only_group.decode() != self.group:
            # a retry for another group
            await self.redis.xack(self.keys.stream(partition), self.group, entry_id)
            return None
        try:
            event = decode_event(fields)
        except UndecodableEvent as exc:
            await self._dead_letter(partition, entry_id, fields, attempt, f"undecodable: {exc}")
            return None
        return Delivery(partition, entry_id, event, attempt, only_group is not None,
                        fields.get(BODY))

    # -- handling --------------------------------------------------------------------------

    async def _handle(self, partition: int, deliveries: list[Delivery]) -> list[Failure]:
        """Hand a batch to the handler and acknowledge what it finished; returns the failures."""
        started = time.perf_counter()
        heartbeat = asyncio.create_task(self._keep_claimed(deliveries))
        try:
            outcomes = await self.handler.handle(deliveries)
        except Exception as exc:  # noqa: BLE001 - any handler failure is an outcome
            outcomes = [exc] * len(deliveries)
        finally:
            heartbeat.cancel()
        HANDLER_SECONDS.labels(self.group).observe(time.perf_counter() - started)
        done = [d.entry_id for d, o in zip(deliveries, outcomes, strict=True) if o is None]
        if done:
            await self._acknowledge(partition, done)
            PROCESSED.labels(self.group).inc(len(done))
        failed = [(d, o) for d, o in zip(deliveries, outcomes, strict=True) if o is not None]
        if failed:
            FAILED.labels(self.group).inc(len(failed))
        return failed

    async def _acknowledge(self, partition: int, entry_ids: list[str]) -> None:
        """XACK the entries the handler finished."""
        await self.redis.xack(self.keys.stream(partition), self.group, *entry_ids)

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
                except REDIS_ERRORS:
                    pass  # the next beat tries again

    # -- giving up -------------------------------------------------------------------------

    async def _give_up(self, delivery: Delivery, error: BaseException, fields: Fields) -> None:
        """Dead-letter a delivery that failed for good, then tell the handler."""
        await self._dead_letter(delivery.partition, delivery.entry_id, fields,
                                delivery.attempt, describe_error(error))
        await self.handler.on_dead_letter(delivery, error)

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
        record.update(dead_letter_copy(fields))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.keys.dead_letters(partition), record)
            pipe.xack(stream, self.group, entry_id)
            pipe.hdel(self.keys.last_error(partition, self.group), entry_id)
            pipe.zrem(self.keys.retry_schedule(partition, self.group), entry_id)
            await pipe.execute()
        DEAD_LETTERED.labels(self.group).inc()
        log.error("dead-lettered", extra={"fields": {"group": self.group, "entry_id": entry_id,
                                                     "attempts": attempts, "error": reason}})

    # -- upkeep ----------------------------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        """Run the mode's upkeep every tick, refresh gauges, forget long-idle consumers."""
        tick = min(0.25, self.policy.base_delay_ms / 4000)
        last_cleanup = last_gauges = 0.0
        while not self.stop.is_set():
            try:
                await self._maintain()
                if time.monotonic() - last_gauges > GAUGES_EVERY_S:
                    last_gauges = time.monotonic()
                    await update_group_gauges(self.redis, self.keys, self.group)
                if time.monotonic() - last_cleanup > IDLE_CONSUMERS_EVERY_S:
                    last_cleanup = time.monotonic()
                    await self._remove_idle_consumers()
            except REDIS_ERRORS as exc:
                log.warning("maintenance failed, retrying",
                            extra={"fields": {"group": self.group, "error": type(exc).__name__}})
            await self._sleep(max(tick, 0.01))

    async def _remove_idle_consumers(self) -> None:
        """Forget consumers that own nothing and have been silent for ten visibility timeouts."""
        for partition in range(self.keys.partitions):
            await remove_idle_consumers(self.redis, self.keys.stream(partition), self.group,
                                        keep=self.consumer,
                                        idle_ms=10 * self.visibility_timeout_ms)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when asked to stop."""
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _with_redis_retry(self, action: Callable[[], Awaitable[object]]) -> None:
        """Run ``action`` until it gets through to Redis, or until asked to stop."""
        while not self.stop.is_set():
            try:
                await action()
                return
            except REDIS_ERRORS as exc:
                log.warning("redis unavailable, retrying",
                            extra={"fields": {"group": self.group, "error": type(exc).__name__}})
                await self._sleep(1.0)


def fields_by_entry_id(entries: list[Entry]) -> dict[str, Fields]:
    """The fields of each entry that still has them, by entry id."""
    return {as_text(i): f for i, f, _ in entries if i is not None and f}


def first_deliveries(entries: list[RawEntry]) -> list[Entry]:
    """Entries of an unparsed ``XREADGROUP ... >`` reply as ``Entry``, each on its first
    delivery."""
    return [(i, fields_of(pairs), 1) for i, pairs in entries]


def describe_error(error: BaseException) -> str:
    """One line naming the error's type and message, at most 500 characters."""
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:500]
