"""The runtime of a group that spreads every partition over all its consumers (replier,
summarizer): any consumer may handle any entry, so one failing entry holds up no other.

* A failed entry stays pending; its id goes into a retry schedule (a ZSET scored by due time)
  with an exponential backoff driven by its delivery count; when due, a live consumer that wins
  the ZREM takes it with XCLAIM (which bumps the delivery count) and handles it again.
* After the last attempt, or at once for a NonRetryableError, the entry is dead-lettered and
  the handler's ``on_dead_letter`` is called.
* A ``RetryLater`` (a rate limit, not a failure) goes into the same schedule at its due time
  without spending an attempt: XCLAIM still bumps the delivery count, so the deliveries spent
  waiting are counted per entry (a hash) and subtracted from it to get the attempt number.
* Entries of a consumer that died are taken over with XCLAIM once idle for the visibility
  timeout (found with XPENDING ... IDLE, which Redis 6.2 and 7.x both have); one that had used
  its last attempt is dead-lettered instead.
* Reading does not wait for the batch just read to be settled: the next XREADGROUP goes out at
  once, for as many entries as the process has room for (at most ``batch_size`` unsettled at
  a time), so a new entry never queues behind a slow one of the previous batch
  (docs/decisions/0012-replier-overlapping-reads.md). A handler that needs an order between
  batches keeps it itself (the replier: per user). A failed batch stops the consumer as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.platform.eventlog.entries import UndecodableEvent, as_text, decode_event
from app.platform.metrics import RETRIED
from app.platform.runtime.consumer_runtime import (
    ConsumerRuntime,
    Entry,
    Fields,
    describe_error,
    fields_by_entry_id,
)
from app.platform.runtime.handler import Delivery, GroupHandler
from app.platform.runtime.retry_policy import RetryLater

log = logging.getLogger("mecove.consumer")

PendingRow = dict[str, object]  # one row of XPENDING: message_id, consumer, times_delivered


class SharedRuntime(ConsumerRuntime[GroupHandler]):
    """One of many consumers of a group; each entry is handled by whichever consumer reads it."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._unsettled = 0  # entries read and not yet settled
        self._room = asyncio.Condition()
        self._batches: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None

    async def _consume_partition(self, partition: int) -> None:
        await self._read_new(partition)

    # -- overlapping reads -----------------------------------------------------------------

    async def _read_capacity(self) -> int:
        self._raise_failure()
        async with self._room:
            await self._room.wait_for(lambda: self._unsettled < self.batch_size
                                      or self._failure is not None)
        self._raise_failure()
        return self.batch_size - self._unsettled

    async def _accept(self, partition: int, entries: list[Entry]) -> None:
        self._unsettled += len(entries)
        task = asyncio.create_task(self._process_then_release(partition, entries))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _process_then_release(self, partition: int, entries: list[Entry]) -> None:
        try:
            await self._process(partition, entries)
        except Exception as exc:  # noqa: BLE001 - raised by the read loop, as inline before
            if self._failure is None:
                self._failure = exc
        finally:
            async with self._room:
                self._unsettled -= len(entries)
                self._room.notify_all()

    async def _settle_accepted(self) -> None:
        reader = asyncio.current_task()
        if reader is not None and reader.cancelling():
            for batch in self._batches:  # cancelled, not stopped: the batches go with it
                batch.cancel()
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    async def _process(self, partition: int, entries: list[Entry]) -> None:
        waited = await self._deferrals(partition, [i for i, _, a in entries
                                                   if i is not None and a > 1])
        entries = [(i, f, a - waited.get(as_text(i), 0) if i is not None else a)
                   for i, f, a in entries]
        deliveries = await self._deliveries(partition, entries)
        if not deliveries:
            return
        failed = await self._handle(partition, deliveries)
        fields = fields_by_entry_id(entries)
        for delivery, error in failed:
            await self._after_failure(delivery, error, fields.get(delivery.entry_id, {}))
        deferred_again = {d.entry_id for d, e in failed if isinstance(e, RetryLater)}
        settled = [i for i in waited if i not in deferred_again]
        if settled:
            await self.redis.hdel(self._deferrals_key(partition), *settled)

    def _deferrals_key(self, partition: int) -> str:
        """Hash entry id -> deliveries spent waiting on a ``RetryLater`` (not attempts)."""
        return self.keys.key(partition, f"deferred:{self.group}")

    async def _deferrals(self, partition: int, entry_ids: list[bytes | str]) -> dict[str, int]:
        """How many deliveries each of ``entry_ids`` spent deferred (only those with any)."""
        if not entry_ids:
            return {}
        ids = [as_text(i) for i in entry_ids]
        counts = await self.redis.hmget(self._deferrals_key(partition), ids)
        return {i: int(c) for i, c in zip(ids, counts, strict=True) if c}

    async def _defer(self, delivery: Delivery, later: RetryLater) -> None:
        """Schedule the delivery at its due time, its attempt unspent."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(self._deferrals_key(delivery.partition), delivery.entry_id, 1)
            pipe.zadd(self.keys.retry_schedule(delivery.partition, self.group),
                      {delivery.entry_id: later.due_ms})
            await pipe.execute()
        log.info("deferred", extra={"fields": {
            "group": self.group, "entry_id": delivery.entry_id, "due_ms": later.due_ms,
            "message_id": getattr(delivery.event, "message_id", None), "reason": later.reason}})

    async def _after_failure(self, delivery: Delivery, error: BaseException,
                             fields: Fields) -> None:
        """Dead-letter the delivery if that was its last chance, else schedule its retry."""
        if isinstance(error, RetryLater):
            await self._defer(delivery, error)
            return
        if self.policy.gives_up_after(delivery.attempt, error):
            await self._give_up(delivery, error, fields)
            return
        reason = describe_error(error)
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

    # -- every maintenance tick ------------------------------------------------------------

    async def _maintain(self) -> None:
        for partition in range(self.keys.partitions):
            await self._run_due_retries(partition)
            await self._reclaim_abandoned(partition)

    async def _run_due_retries(self, partition: int) -> None:
        """Claim and handle again the entries whose retry is due."""
        schedule = self.keys.retry_schedule(partition, self.group)
        due = await self.redis.zrangebyscore(
            schedule, "-inf", self.clock_ms(), start=0, num=self.batch_size
        )
        mine: list[str] = []
        for raw in due:
            if await self.redis.zrem(schedule, raw):  # only one consumer wins each retry
                mine.append(as_text(raw))
        if not mine:
            return
        stream = self.keys.stream(partition)
        pending: list[PendingRow] = []
        for entry_id in mine:
            pending += await self.redis.xpending_range(
                stream, self.group, min=entry_id, max=entry_id, count=1
            )
        if pending:
            await self._claim_and_process(partition, pending, min_idle_ms=0)

    async def _reclaim_abandoned(self, partition: int) -> None:
        """Entries idle past the visibility timeout belong to a dead or stuck consumer."""
        candidates = await self._abandoned(partition)
        waited = await self._deferrals(partition, [p["message_id"] for p in candidates])  # type: ignore[misc]

        def attempts(item: PendingRow) -> int:  # deliveries spent deferred are no attempts
            return int(item["times_delivered"]) - waited.get(as_text(item["message_id"]), 0)  # type: ignore[call-overload, arg-type]

        exhausted = [p for p in candidates if attempts(p) >= self.policy.max_attempts]
        for item in exhausted:
            await self._dead_letter_abandoned(partition, item, attempts(item))
        rest = [p for p in candidates if p not in exhausted]
        if rest:
            log.warning("reclaiming entries of a dead consumer",
                        extra={"fields": {"group": self.group, "count": len(rest)}})
            await self._claim_and_process(partition, rest, min_idle_ms=self.visibility_timeout_ms)

    async def _abandoned(self, partition: int) -> list[PendingRow]:
        """Pending entries of other consumers, idle past the visibility timeout, not scheduled."""
        pending = await self.redis.xpending_range(
            self.keys.stream(partition), self.group, min="-", max="+", count=self.batch_size,
            idle=self.visibility_timeout_ms,
        )
        scheduled = self.keys.retry_schedule(partition, self.group)
        candidates: list[PendingRow] = []
        for item in pending:
            if as_text(item["consumer"]) == self.consumer:
                continue  # our own in-flight work, or a failure already in the retry schedule
            if await self.redis.zscore(scheduled, item["message_id"]) is None:
                candidates.append(item)
        return candidates

    async def _dead_letter_abandoned(self, partition: int, item: PendingRow,
                                     attempts: int) -> None:
        """A dead consumer's entry that had used its last attempt: dead-letter it."""
        entry_id = as_text(item["message_id"])  # type: ignore[arg-type]
        claimed = await self.redis.xclaim(self.keys.stream(partition), self.group, self.consumer,
                                          self.visibility_timeout_ms, [entry_id])
        if not claimed or claimed[0][0] is None:
            return  # a peer claimed it meanwhile, or it was trimmed
        fields = claimed[0][1] or {}
        raw_reason = await self.redis.hget(self.keys.last_error(partition, self.group), entry_id)
        reason = as_text(raw_reason) if raw_reason else "consumer died on its last attempt"
        await self._dead_letter(partition, entry_id, fields, attempts, reason)
        await self.redis.hdel(self._deferrals_key(partition), entry_id)
        try:
            event = decode_event(fields)
        except UndecodableEvent:
            return
        await self.handler.on_dead_letter(Delivery(partition, entry_id, event, attempts), reason)
