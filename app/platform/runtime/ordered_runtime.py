"""The runtime of a group that must apply each partition in log order (the projector).

* One consumer at a time works a partition: the one holding the handler's lease
  (``acquire_partition``). The others wait for it and take over when the holder stops or dies.
* On getting the lease it adopts every pending entry of the group, oldest first (XPENDING +
  XCLAIM), and applies them before reading new entries.
* A failed batch is retried in place with the policy's backoff, never skipped: applying a
  later batch first would break the order. Only a NonRetryableError dead-letters its entry.
* Asked to stop, it handles no further batch: a batch waiting for its retry stays pending for
  the next lease holder.
"""

from __future__ import annotations

import logging

from app.platform.eventlog.entries import as_text
from app.platform.runtime.consumer_runtime import (
    ConsumerRuntime,
    Entry,
    Failure,
    Fields,
    describe_error,
    fields_by_entry_id,
)
from app.platform.runtime.handler import Delivery, OrderedHandler
from app.platform.runtime.retry_policy import NonRetryableError

log = logging.getLogger("mecove.consumer")


class OrderedRuntime(ConsumerRuntime[OrderedHandler]):
    """The consumer that works a partition while it holds the partition's lease."""

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

    async def _process(self, partition: int, entries: list[Entry]) -> None:
        deliveries = await self._deliveries(partition, entries)
        fields = fields_by_entry_id(entries)
        while deliveries and not self.stop.is_set():
            failed = await self._handle(partition, deliveries)
            deliveries = await self._retryable(failed, fields)
            if deliveries:
                await self._back_off(deliveries, failed[0][1])

    async def _retryable(self, failed: list[Failure], fields: dict[str, Fields]) -> list[Delivery]:
        """Dead-letter the failures that can never pass; return the rest, to retry in place."""
        retry: list[Delivery] = []
        for delivery, error in failed:
            if isinstance(error, NonRetryableError):
                await self._give_up(delivery, error, fields.get(delivery.entry_id, {}))
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
