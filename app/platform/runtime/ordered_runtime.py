"""The runtime of a group that must apply each partition in log order (the projector).

* One consumer at a time works a partition: the one holding the handler's lease
  (``acquire_partition``). The others wait for it and take over when the holder stops or dies.
* On getting the lease it adopts every pending entry of the group, oldest first (XPENDING +
  XCLAIM), and applies them before reading new entries.
* A failed batch is retried in place with the policy's backoff, never skipped: applying a
  later batch first would break the order. Only a NonRetryableError dead-letters its entry.
* Asked to stop, it handles no further batch: a batch waiting for its retry stays pending for
  the next lease holder.
* It reads ahead: the next XREADGROUP, and decoding what it returns, run while the handler
  writes the current batch (one batch ahead at most). A batch read ahead is applied only after
  the current one is settled, so the order holds; if the consumer stops first, the batch stays
  pending and the next lease holder adopts it, like any batch not yet acknowledged.
* It lingers on a trickle: a read that finds fewer than ``LINGER_BELOW`` entries and less
  than a batch (so the stream's tail, no backlog) waits ``linger_ms`` (less when asked to
  stop) and takes what came meanwhile in one more read without blocking, so each batch (one
  transaction, checkpoint, key check, round trips) carries several events at a low rate
  (decision 0017).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import RedisCluster

from app.platform.eventlog.entries import RawEntry, as_text, reply_entries
from app.platform.redis_client import REDIS_ERRORS, RedisClient, open_blocking_reader
from app.platform.runtime.consumer_runtime import (
    ConsumerRuntime,
    Entry,
    Failure,
    Fields,
    describe_error,
    fields_by_entry_id,
    first_deliveries,
)
from app.platform.runtime.handler import Delivery, OrderedHandler
from app.platform.runtime.retry_policy import NonRetryableError

log = logging.getLogger("mecove.consumer")

# A batch's deliveries, and its entries' fields by entry id, built only when one dead-letters.
FieldsOfBatch = Callable[[], dict[str, Fields]]
_Decoded = tuple[list[Delivery], FieldsOfBatch]
# A read of fewer entries than this lingers for more (``linger_ms``); FEW_ROWS-sized batches
# are the ones whose fixed cost per batch dominates (projections/write_rows.py).
LINGER_BELOW = 32


class OrderedRuntime(ConsumerRuntime[OrderedHandler]):
    """The consumer that works a partition while it holds the partition's lease."""

    def __init__(self, *, linger_ms: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.linger_ms = max(linger_ms, 0)
        self._read_failed = False  # a read raised: adopt what it may have delivered first
        self._acking: dict[int, asyncio.Task[object]] = {}  # per partition, its last XACK

    async def _consume_partition(self, partition: int) -> None:
        if not await self.handler.acquire_partition(partition, self.stop):
            return
        try:
            await self._with_redis_retry(lambda: self._adopt_all_pending(partition))
            await self._read_new(partition)
        finally:
            await self.handler.release_partition(partition)

    async def _adopt_all_pending(self, partition: int) -> None:
        """Take every pending entry of the group, oldest first, and apply it."""
        await self._acked(partition)  # nothing pending that is being acknowledged
        stream = self.keys.stream(partition)
        start = "-"
        while not self.stop.is_set():
            pending = await self.redis.xpending_range(
                stream, self.group, min=start, max="+", count=self.batch_size
            )
            if not pending:
                return
            await self._claim_and_process(partition, pending, min_idle_ms=0)
            last = as_text(pending[-1]["message_id"])
            start = "(" + last

    async def _read_new(self, partition: int) -> None:
        """Read never-delivered entries and apply them in order, reading one batch ahead."""
        reader = open_blocking_reader(self.redis_url, block_ms=self.block_ms,
                                      cluster=isinstance(self.redis, RedisCluster))
        ahead: asyncio.Task[_Decoded | None] | None = None
        try:
            while not self.stop.is_set():
                current = await (ahead or self._read_decoded(reader, partition))
                ahead = None
                if current is not None and not self.stop.is_set():
                    if not self._read_failed:
                        # Start the next read (and its decoding) before writing this batch.
                        ahead = asyncio.create_task(self._read_decoded(reader, partition))
                    await self._apply(partition, *current)
                if self._read_failed and not self.stop.is_set():
                    # A failed read may have been delivered with its reply lost: those entries
                    # are pending to us, before anything read next. Take them first.
                    self._read_failed = False
                    await self._with_redis_retry(lambda: self._adopt_all_pending(partition))
        finally:
            if ahead is not None:
                ahead.cancel()  # what it read stays pending: the next lease holder adopts it
                try:
                    await ahead
                except (asyncio.CancelledError, *REDIS_ERRORS):
                    pass
                except Exception:  # noqa: BLE001 - must not hide why the loop ended
                    log.warning("read-ahead failed while stopping", exc_info=True)
            try:
                await self._acked(partition)
            except REDIS_ERRORS:
                pass  # those entries stay pending: the next holder adopts them, past its checkpoint
            await reader.aclose()

    async def _read_decoded(self, reader: RedisClient, partition: int) -> _Decoded | None:
        """One XREADGROUP, decoded; None when nothing came (or Redis failed, after a pause)."""
        try:
            response = await reader.xreadgroup(
                self.group, self.consumer, {self.keys.stream(partition): ">"},
                count=self.batch_size, block=self.block_ms,
            )
        except REDIS_ERRORS as exc:
            self._read_failed = True
            if not self.stop.is_set():
                log.warning("read failed, retrying",
                            extra={"fields": {"group": self.group, "error": type(exc).__name__}})
                await self._sleep(1.0)
            return None
        entries = reply_entries(response)
        if not entries:
            return None
        if (len(entries) < min(LINGER_BELOW, self.batch_size) and self.linger_ms
                and not self.stop.is_set()):  # a full read means a backlog: no linger
            entries = entries + await self._linger(reader, partition,
                                                   self.batch_size - len(entries))
        deliveries = await self._read_deliveries(partition, entries)
        if deliveries:
            await self.handler.prepare(deliveries)
        return deliveries, lambda: fields_by_entry_id(first_deliveries(entries))

    async def _linger(self, reader: RedisClient, partition: int, room: int) -> list[RawEntry]:
        """After a small read: wait ``linger_ms`` (less when asked to stop), then take what
        came meanwhile without blocking. A failed read returns nothing: the entries already
        read are projected now, then whatever it may have delivered is adopted (``_read_new``)."""
        await self._sleep(self.linger_ms / 1000)
        if self.stop.is_set() or room <= 0:
            return []
        try:
            response = await reader.xreadgroup(
                self.group, self.consumer, {self.keys.stream(partition): ">"}, count=room)
        except REDIS_ERRORS:
            self._read_failed = True
            return []
        return reply_entries(response)

    async def _acknowledge(self, partition: int, entry_ids: list[str]) -> None:
        """Send the XACK and go on without its reply: the handler committed the batch (with
        its checkpoint, so an entry acknowledged late, or never, is skipped when adopted
        again), and the next batch's transaction starts meanwhile instead of after a round
        trip of ~4 ms for 5,000 ids with PostgreSQL idle. One XACK in flight per partition; its
        failure is raised here, at the next batch's."""
        await self._acked(partition)
        self._acking[partition] = asyncio.create_task(
            self.redis.xack(self.keys.stream(partition), self.group, *entry_ids))

    async def _acked(self, partition: int) -> None:
        """Wait for the partition's XACK in flight, if any; raises its Redis error."""
        acking = self._acking.pop(partition, None)
        if acking is not None:
            await acking

    async def _process(self, partition: int, entries: list[Entry]) -> None:
        await self._apply(partition, await self._deliveries(partition, entries),
                          lambda: fields_by_entry_id(entries))

    async def _apply(self, partition: int, deliveries: list[Delivery],
                     fields: FieldsOfBatch) -> None:
        """Handle a decoded batch until each delivery is done or dead-lettered (or we stop)."""
        while deliveries and not self.stop.is_set():
            failed = await self._handle(partition, deliveries)
            deliveries = await self._retryable(failed, fields)
            if deliveries:
                await self._back_off(deliveries, failed[0][1])

    async def _retryable(self, failed: list[Failure], fields: FieldsOfBatch) -> list[Delivery]:
        """Dead-letter the failures that can never pass; return the rest, to retry in place."""
        retry: list[Delivery] = []
        by_entry_id: dict[str, Fields] | None = None
        for delivery, error in failed:
            if isinstance(error, NonRetryableError):
                by_entry_id = fields() if by_entry_id is None else by_entry_id
                await self._give_up(delivery, error, by_entry_id.get(delivery.entry_id, {}))
            else:
                retry.append(delivery)
        return retry

    async def _back_off(self, deliveries: list[Delivery], error: BaseException) -> None:
        """Wait the policy's delay for the batch's latest attempt, and count one more attempt."""
        attempt = max(d.attempt for d in deliveries)
        for delivery in deliveries:
            delivery.attempt += 1
        delay = self.policy.delay_ms(attempt) / 1000
        log.warning("batch failed, retrying in place",
                    extra={"fields": {"group": self.group, "delay_s": delay,
                                      "error": describe_error(error)}})
        await self._sleep(delay)

