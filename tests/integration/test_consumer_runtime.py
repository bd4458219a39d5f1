"""The two consumer-group runtimes driven directly, with stub handlers, on the real Redis:
retries on the policy's schedule, reclaim of a dead consumer's entries, dead letters, the
ordered mode's lease and in-place retries, and a graceful stop in the middle of a batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from app.platform.eventlog.entries import encode_event
from app.platform.eventlog.keys import Keys
from app.platform.runtime import ordered_runtime
from app.platform.runtime.consumer_group import ensure_group
from app.platform.runtime.consumer_runtime import ConsumerRuntime
from app.platform.runtime.handler import Delivery, GroupHandler, OrderedHandler
from app.platform.runtime.ordered_runtime import OrderedRuntime
from app.platform.runtime.retry_policy import NonRetryableError, RetryableError, RetryPolicy
from app.platform.runtime.shared_runtime import SharedRuntime
from schema.events import SummaryRequested
from tests.service import eventually

if TYPE_CHECKING:
    from tests.conftest import TestServers

GROUP = "stub"

Outcome = Callable[[Delivery], BaseException | None]


def _succeed(delivery: Delivery) -> BaseException | None:
    return None


class StubHandler(GroupHandler):
    """Records every batch it is given; ``outcome`` decides each delivery's fate."""

    group = GROUP
    min_batch_size = 1

    def __init__(self, outcome: Outcome = _succeed) -> None:
        self.outcome = outcome
        self.batches: list[list[tuple[str, int]]] = []  # (event id, attempt) per delivery
        self.dead: list[tuple[str, int, BaseException | str]] = []

    @property
    def handled(self) -> list[tuple[str, int]]:
        return [item for batch in self.batches for item in batch]

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def handle(self, deliveries: list[Delivery]) -> list[BaseException | None]:
        self.batches.append([(d.event.event_id, d.attempt) for d in deliveries])
        return [self.outcome(d) for d in deliveries]

    async def on_dead_letter(self, delivery: Delivery, error: BaseException | str) -> None:
        self.dead.append((delivery.event.event_id, delivery.attempt, error))


class LeasedStubHandler(StubHandler, OrderedHandler):
    """An ordered stub whose lease is a name in a dict shared by the competing handlers."""

    def __init__(self, name: str, leases: dict[int, str], outcome: Outcome = _succeed) -> None:
        super().__init__(outcome)
        self.name = name
        self.leases = leases

    async def acquire_partition(self, partition: int, stop: asyncio.Event) -> bool:
        while not stop.is_set():
            if partition not in self.leases:
                self.leases[partition] = self.name
                return True
            await asyncio.sleep(0.02)
        return False

    async def release_partition(self, partition: int) -> None:
        if self.leases.get(partition) == self.name:
            del self.leases[partition]


class FakeClock:
    """Milliseconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now_ms = 1_000_000

    def __call__(self) -> int:
        return self.now_ms


def _runtime(
    runtime_class: type[ConsumerRuntime[Any]],
    servers: TestServers,
    redis: Redis,
    key_prefix: str,
    handler: GroupHandler,
    *,
    consumer: str = "live",
    policy: RetryPolicy | None = None,
    batch_size: int = 10,
    visibility_timeout_ms: int = 60_000,
    clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    **extra: Any,
) -> ConsumerRuntime[Any]:
    return runtime_class(
        **extra,
        redis=redis,
        redis_url=servers.redis_url,
        keys=Keys(key_prefix, 1),
        handler=handler,
        consumer_name=consumer,
        policy=policy or RetryPolicy(max_attempts=3, base_delay_ms=20),
        batch_size=batch_size,
        block_ms=50,
        visibility_timeout_ms=visibility_timeout_ms,
        clock_ms=clock_ms,
    )


@asynccontextmanager
async def _running(runtime: ConsumerRuntime[Any]) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``runtime`` in the background; stop it and wait for ``run`` to return on exit."""
    task = asyncio.create_task(runtime.run())
    try:
        yield task
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, timeout=10)


async def _append(redis: Redis, key_prefix: str, count: int, start: int = 0) -> list[str]:
    """Append ``count`` events to partition 0; returns their event ids in log order."""
    stream = Keys(key_prefix, 1).stream(0)
    ids = [f"event-{i}" for i in range(start, start + count)]
    for event_id in ids:
        event = SummaryRequested(event_id=event_id, occurred_at=1_700_000_000_000, user_id="u1")
        await redis.xadd(stream, encode_event(event))  # type: ignore[arg-type]
    return ids


async def _pending(redis: Redis, key_prefix: str) -> int:
    return int((await redis.xpending(Keys(key_prefix, 1).stream(0), GROUP))["pending"])


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition`` holds (a check of what a stub handler has seen)."""
    async def check() -> bool:
        return condition()
    await eventually(check, timeout=timeout)


async def _until_all_acked(redis: Redis, key_prefix: str) -> None:
    async def acked() -> bool:
        return await _pending(redis, key_prefix) == 0
    await eventually(acked)


async def _dead_letters(redis: Redis, key_prefix: str) -> list[dict[bytes, bytes]]:
    return [fields for _id, fields in await redis.xrange(Keys(key_prefix, 1).dead_letters(0))]


async def _scheduled_due_times(redis: Redis, key_prefix: str) -> list[float]:
    schedule = Keys(key_prefix, 1).retry_schedule(0, GROUP)
    return [score for _member, score in await redis.zrange(schedule, 0, -1, withscores=True)]


async def _assert_nothing_dead_lettered_nor_scheduled(
    handler: StubHandler, redis: Redis, key_prefix: str
) -> None:
    assert handler.dead == []
    assert await _dead_letters(redis, key_prefix) == []
    assert await _scheduled_due_times(redis, key_prefix) == []


# -- shared mode ----------------------------------------------------------------------------


async def test_a_failing_entry_is_retried_on_the_policy_schedule_then_done(
    servers: TestServers, redis: Redis, key_prefix: str
) -> None:
    clock = FakeClock()
    handler = StubHandler(lambda d: RetryableError("busy") if d.attempt < 3 else None)
    policy = RetryPolicy(max_attempts=3, base_delay_ms=1_000, factor=2.0)
    runtime = _runtime(SharedRuntime, servers, redis, key_prefix, handler, policy=policy,
                       clock_ms=clock)
    [event_id] = await _append(redis, key_prefix, 1)
    async with _running(runtime):
        await eventually(lambda: _scheduled_due_times(redis, key_prefix))
        assert await _scheduled_due_times(redis, key_prefix) == [clock.now_ms + 1_000]
        clock.now_ms += 999
        await asyncio.sleep(0.6)  # a few maintenance ticks: the retry is not due yet
        assert handler.handled == [(event_id, 1)]

        clock.now_ms += 1
        await _until(lambda: len(handler.handled) == 2)
        await eventually(lambda: _scheduled_due_times(redis, key_prefix))
        assert await _scheduled_due_times(redis, key_prefix) == [clock.now_ms + 2_000]

        clock.now_ms += 2_000
        await _until(lambda: len(handler.handled) == 3)
        await _until_all_acked(redis, key_prefix)
    assert handler.handled == [(event_id, 1), (event_id, 2), (event_id, 3)]
    await _assert_nothing_dead_lettered_nor_scheduled(handler, redis, key_prefix)


async def test_an_entry_failing_its_last_attempt_is_dead_lettered_with_why(
    servers: TestServers, redis: Redis, key_prefix: str
) -> None:
    handler = StubHandler(lambda d: RetryableError("upstream is down"))
    runtime = _runtime(SharedRuntime, servers, redis, key_prefix, handler)
    [event_id] = await _append(redis, key_prefix, 1)
    stream = Keys(key_prefix, 1).stream(0)
    [(entry_id, fields)] = await redis.xrange(stream)
    async with _running(runtime):
        await eventually(lambda: _dead_letters(redis, key_prefix))
        await _until_all_acked(redis, key_prefix)
    assert handler.handled == [(event_id, 1), (event_id, 2), (event_id, 3)]
    [record] = await _dead_letters(redis, key_prefix)
    assert record[b"entry_id"] == entry_id
    assert record[b"stream"] == stream.encode()
    assert record[b"group"] == GROUP.encode()
    assert record[b"attempts"] == b"3"
    assert record[b"error"] == b"RetryableError: upstream is down"
    assert record[b"event_id"] == event_id.encode()
    assert record[b"event_body"] == fields[b"body"]
    assert [(e, a) for e, a, _error in handler.dead] == [(event_id, 3)]
    assert isinstance(handler.dead[0][2], RetryableError)
    assert await _scheduled_due_times(redis, key_prefix) == []
    assert await redis.hlen(Keys(key_prefix, 1).last_error(0, GROUP)) == 0


async def test_a_non_retryable_error_dead_letters_at_once(
    servers: TestServers, redis: Redis, key_prefix: str
) -> None:
    handler = StubHandler(lambda d: NonRetryableError("bad input") if d.event.event_id
                          == "event-1" else None)
    runtime = _runtime(SharedRuntime, servers, redis, key_prefix, handler)
    await _append(redis, key_prefix, 3)
    async with _running(runtime):
        await eventually(lambda: _dead_letters(redis, key_prefix))
        await _until_all_acked(redis, key_prefix)
    assert sorted(handler.handled) == [("event-0", 1), ("event-1", 1), ("event-2", 1)]
    [record] = await _dead_letters(redis, key_prefix)
    assert (record[b"event_id"], record[b"attempts"]) == (b"event-1", b"1")
    assert record[b"error"] == b"NonRetryableError: bad input"
    assert [(e, a) for e, a, _error in handler.dead] == [("event-1", 1)]


async def test_entries_of_a_dead_consumer_are_taken_over_after_the_visibility_timeout(
    servers: TestServers, redis: Redis, key_prefix: str
) -> None:
    keys = Keys(key_prefix, 1)
    await ensure_group(redis, keys.stream(0), GROUP)
    event_ids = await _append(redis, key_prefix, 3)
    # "dead" reads the entries and never acknowledges them.
    await redis.xreadgroup(GROUP, "dead", {keys.stream(0): ">"}, count=10)
    handler = StubHandler()
    runtime = _runtime(SharedRuntime, servers, redis, key_prefix, handler,
                       visibility_timeout_ms=300)
    async with _running(runtime):
        await _until(lambda: len(handler.handled) == 3)
        await _until_all_acked(redis, key_prefix)
    # XCLAIM counted the dead consumer's delivery: this is each entry's second attempt.
    assert sorted(handler.handled) == [(event_id, 2) for event_id in event_ids]
    assert await _dead_letters(redis, key_prefix) == []


async def test_a_dead_consumers_entry_on_its_last_attempt_is_dead_lettered_not_retried(
    servers: TestServers, redis: Redis, key_prefix: str
) -> None:
    keys = Keys(key_prefix, 1)
    await ensure_group(redis, keys.stream(0), GROUP)
    [event_id] = await _append(redis, key_prefix, 1)
    await redis.xreadgroup(GROUP, "dead", {keys.stream(0): ">"}, count=10)
    handler = StubHandler()
    runtime = _runtime(SharedRuntime, servers, redis, key_prefix, handler,
                       policy=RetryPolicy(max_attempts=1, base_delay_ms=20),
                       visibility_timeout_ms=300)
    async with _running(runtime):
        await eventually(lambda: _dead_letters(redis, key_prefix))
        await _until_all_acked(redis, key_prefix)
    assert handler.handled == []
    [record] = await _dead_letters(redis, key_prefix)
    assert record[b"error"] == b"consumer died on its last attempt"
    assert record[b"attempts"] == b"1"
    assert handler.dead == [(event_id, 1, "consumer died on its last attempt")]


# -- ordered mode ---------------------------------------------------------------------------


async def test_only_the_lease_holder_handles_and_the_other_takes_over_in_order_when_it_stops(
    servers: TestServers, redis: Redis, key_prefix: str
) -> None:
    leases: dict[int, str] = {}
    first = LeasedStubHandler("first", leases)
    second = LeasedStubHandler("second", leases)
    first_runtime = _runtime(OrderedRuntime, servers, redis, key_prefix, first,
                             consumer="first", batch_size=2)
    second_runtime = _runtime(OrderedRuntime, servers, redis, key_prefix, second,
                              consumer="second", batch_size=2)
    appended = await _append(redis, key_prefix, 4)
    async with _running(first_runtime) as first_task:
        await _until(lambda: leases.get(0) == "first")
        async with _running(second_runtime):
            appended += await _append(redis, key_prefix, 3, start=4)
            await _until(lambda: len(first.handled) == 7)
            await _until_all_acked(redis, key_prefix)
            assert second.batches == []

            first_runtime.request_stop()
            await asyncio.wait_for(first_task, timeout=10)
            await _until(lambda: leases.get(0) == "second")
            appended += await _append(redis, key_prefix, 3, start=7)
            await _until(lambda: len(second.handled) == 3)
            await _until_all_acked(redis, key_prefix)
    assert [event_id for event_id, _attempt in first.handled + second.handled] == appended


async def test_an_ordered_runtime_retries_a_failed_batch_in_place_before_reading_on(
    servers: TestServers, redis: Redis, key_prefix: str
) -> None:
    first_three = ["event-0", "event-1", "event-2"]

    def fails_twice(delivery: Delivery) -> BaseException | None:
        if delivery.event.event_id in first_three and delivery.attempt < 3:
            return RetryableError("db busy")
        return None

    handler = LeasedStubHandler("only", {}, fails_twice)
    runtime = _runtime(OrderedRuntime, servers, redis, key_prefix, handler, batch_size=3)
    await _append(redis, key_prefix, 6)
    async with _running(runtime):
        await _until(lambda: len(handler.batches) == 4)
        await _until_all_acked(redis, key_prefix)
    assert handler.batches == [
        [(event_id, 1) for event_id in first_three],
        [(event_id, 2) for event_id in first_three],
        [(event_id, 3) for event_id in first_three],
        [("event-3", 1), ("event-4", 1), ("event-5", 1)],
    ]
    await _assert_nothing_dead_lettered_nor_scheduled(handler, redis, key_prefix)


async def test_an_ordered_runtime_stopped_right_after_a_batch_still_acknowledges_it(
    servers: TestServers, redis: Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's XACK goes out without waiting for its reply (the next batch starts
    meanwhile); stopping settles it before ``run`` returns, so nothing handled stays pending
    when the process exits right after (SIGTERM; decision 0026). Every XACK is slowed down,
    so the last one is still in flight when the loop ends: ``run`` must wait for it."""
    applied: list[int] = []  # per XACK that Redis has applied, how many ids it acknowledged
    xack = redis.xack

    async def slow_xack(name: str, group: str, *ids: str) -> int:
        await asyncio.sleep(0.5)
        count = int(await xack(name, group, *ids))
        applied.append(count)
        return count

    monkeypatch.setattr(redis, "xack", slow_xack)

    def stop_after_the_last(delivery: Delivery) -> BaseException | None:
        if delivery.event.event_id == "event-5":
            runtime.request_stop()  # the loop ends right after this batch's XACK is sent
        return None

    handler = LeasedStubHandler("only", {}, stop_after_the_last)
    runtime = _runtime(OrderedRuntime, servers, redis, key_prefix, handler, batch_size=3)
    await _append(redis, key_prefix, 6)
    await asyncio.wait_for(runtime.run(), timeout=10)
    settled_by_run = list(applied)  # read before any await: an XACK left in flight lands later
    assert len(handler.handled) == 6
    assert settled_by_run == [3, 3]
    assert await _pending(redis, key_prefix) == 0


async def test_an_ordered_runtime_dead_letters_only_the_non_retryable_entry_of_a_batch(
    servers: TestServers, redis: Redis, key_prefix: str
) -> None:
    handler = LeasedStubHandler("only", {}, lambda d: NonRetryableError("cannot apply")
                                if d.event.event_id == "event-1" else None)
    runtime = _runtime(OrderedRuntime, servers, redis, key_prefix, handler)
    await _append(redis, key_prefix, 3)
    async with _running(runtime):
        await eventually(lambda: _dead_letters(redis, key_prefix))
        await _until_all_acked(redis, key_prefix)
    assert handler.batches == [[("event-0", 1), ("event-1", 1), ("event-2", 1)]]
    [record] = await _dead_letters(redis, key_prefix)
    assert (record[b"event_id"], record[b"attempts"]) == (b"event-1", b"1")
    assert [(e, a) for e, a, _error in handler.dead] == [("event-1", 1)]


async def test_the_next_lease_holder_first_adopts_the_batch_its_predecessor_left_failing(
    servers: TestServers, redis: Redis, key_prefix: str
) -> None:
    leases: dict[int, str] = {}
    failing = LeasedStubHandler("failing", leases, lambda d: RetryableError("db down"))
    healthy = LeasedStubHandler("healthy", leases)
    await _append(redis, key_prefix, 4)
    async with _running(_runtime(OrderedRuntime, servers, redis, key_prefix, failing,
                                 consumer="failing", batch_size=2)):
        await _until(lambda: len(failing.batches) >= 2)
    assert {tuple(e for e, _a in batch) for batch in failing.batches} == {("event-0", "event-1")}
    async with _running(_runtime(OrderedRuntime, servers, redis, key_prefix, healthy,
                                 consumer="healthy", batch_size=2)):
        await _until(lambda: len(healthy.handled) == 4)
        await _until_all_acked(redis, key_prefix)
    # Adopting is a second delivery by Redis's count (retries in place are not deliveries).
    # event-2 and event-3 too: the failing holder read them ahead while its batch was failing.
    assert healthy.handled == [("event-0", 2), ("event-1", 2), ("event-2", 2), ("event-3", 2)]
    assert await _dead_letters(redis, key_prefix) == []


async def test_an_ordered_runtime_lingers_after_a_small_read_and_projects_what_came_meanwhile(
    servers: TestServers, redis: Redis, key_prefix: str
) -> None:
    handler, runtime = await _lingering(servers, redis, key_prefix, linger_ms=2_000)
    async with _running(runtime):
        await _append(redis, key_prefix, 1)
        await eventually(lambda: _pending_is(redis, key_prefix, 1))  # read, now lingering
        await _append(redis, key_prefix, 2, start=1)
        await _until(lambda: len(handler.handled) == 3)
        await _until_all_acked(redis, key_prefix)
    assert handler.batches == [[("event-0", 1), ("event-1", 1), ("event-2", 1)]]


async def test_an_ordered_runtime_does_not_linger_on_full_reads(
    servers: TestServers, redis: Redis, key_prefix: str
) -> None:
    handler = LeasedStubHandler("only", {})
    # A linger far longer than the wait below: the two full batches must not wait for it.
    runtime = _runtime(OrderedRuntime, servers, redis, key_prefix, handler, batch_size=3,
                       linger_ms=600_000)
    await _append(redis, key_prefix, 7)
    async with _running(runtime):
        await _until(lambda: len(handler.handled) == 6)
        assert handler.batches == [[(f"event-{i}", 1) for i in range(3)],
                                   [(f"event-{i}", 1) for i in range(3, 6)]]
        await eventually(lambda: _pending_is(redis, key_prefix, 1))  # event-6, lingering


async def test_a_stop_requested_while_lingering_ends_at_once_leaving_the_entries_pending(
    servers: TestServers, redis: Redis, key_prefix: str
) -> None:
    handler, runtime = await _lingering(servers, redis, key_prefix, linger_ms=600_000)
    task = asyncio.create_task(runtime.run())
    await _append(redis, key_prefix, 1)
    await eventually(lambda: _pending_is(redis, key_prefix, 1))
    runtime.request_stop()
    await asyncio.wait_for(task, timeout=10)
    assert handler.batches == []
    assert await _pending(redis, key_prefix) == 1  # the next lease holder adopts it


class ReplyLosingReader:
    """A blocking reader whose ``lose``-th XREADGROUP reaches Redis (entries delivered) but
    whose reply is lost on the way back, as when the connection drops."""

    def __init__(self, real: Any, lose: int) -> None:
        self.real = real
        self.lose = lose
        self.calls = 0

    async def xreadgroup(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        response = await self.real.xreadgroup(*args, **kwargs)
        if self.calls == self.lose:
            raise RedisConnectionError("connection lost after the read")
        return response

    async def aclose(self) -> None:
        await self.real.aclose()


@pytest.mark.parametrize("linger_ms", [0, 500])
async def test_entries_a_failed_read_delivered_are_adopted_before_reading_on(
    servers: TestServers, redis: Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch,
    linger_ms: int,
) -> None:
    # linger 0: the read-ahead's reply is lost (full batches of 2); linger 500: the second read
    # of the linger after a read of 2 (batches of 10).
    real_open = ordered_runtime.open_blocking_reader
    monkeypatch.setattr(ordered_runtime, "open_blocking_reader",
                        lambda *a, **k: ReplyLosingReader(real_open(*a, **k), lose=2))
    handler = LeasedStubHandler("only", {})
    runtime = _runtime(OrderedRuntime, servers, redis, key_prefix, handler,
                       batch_size=10 if linger_ms else 2, linger_ms=linger_ms)
    await ensure_group(redis, Keys(key_prefix, 1).stream(0), GROUP)
    await _append(redis, key_prefix, 2 if linger_ms else 4)
    async with _running(runtime):
        if linger_ms:
            await eventually(lambda: _pending_is(redis, key_prefix, 2))
            await _append(redis, key_prefix, 2, start=2)  # the ones a linger read would take
        await _until(lambda: len(handler.handled) >= 4)
        await _append(redis, key_prefix, 1, start=4)
        await _until(lambda: len(handler.handled) >= 5)
        await _until_all_acked(redis, key_prefix)
    assert [event_id for event_id, _attempt in handler.handled] == [
        f"event-{i}" for i in range(5)]


async def _lingering(servers: TestServers, redis: Redis, key_prefix: str, *,
                     linger_ms: int) -> tuple[LeasedStubHandler, ConsumerRuntime[Any]]:
    """An ordered stub and its runtime lingering ``linger_ms``, its group already made."""
    handler = LeasedStubHandler("only", {})
    await ensure_group(redis, Keys(key_prefix, 1).stream(0), GROUP)
    return handler, _runtime(OrderedRuntime, servers, redis, key_prefix, handler,
                             linger_ms=linger_ms)


async def _pending_is(redis: Redis, key_prefix: str, count: int) -> bool:
    return await _pending(redis, key_prefix) == count


class HoldingHandler(StubHandler):
    """Holds the batch that contains ``held`` until the test lets it go."""

    def __init__(self, held: str) -> None:
        super().__init__()
        self.held = held
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, deliveries: list[Delivery]) -> list[BaseException | None]:
        if any(d.event.event_id == self.held for d in deliveries):
            self.holding.set()
            await self.release.wait()
        return await super().handle(deliveries)


async def test_a_shared_consumer_reads_and_handles_new_entries_while_a_slow_batch_runs(
    servers: TestServers, redis: Redis, key_prefix: str
) -> None:
    handler = HoldingHandler(held="event-0")
    runtime = _runtime(SharedRuntime, servers, redis, key_prefix, handler, batch_size=3)
    await _append(redis, key_prefix, 1)
    async with _running(runtime):
        await asyncio.wait_for(handler.holding.wait(), timeout=10)
        await _append(redis, key_prefix, 4, start=1)
        # At most 3 unsettled at a time: event-0 and two more, then the next two.
        await _until(lambda: len(handler.handled) == 4)
        assert sorted(handler.handled) == [(f"event-{i}", 1) for i in range(1, 5)]
        assert await _pending(redis, key_prefix) == 1
        handler.release.set()
        await _until(lambda: len(handler.handled) == 5)
        await _until_all_acked(redis, key_prefix)
    assert sorted(handler.handled) == [(f"event-{i}", 1) for i in range(5)]


# -- shutting down --------------------------------------------------------------------------


class BlockingHandler(LeasedStubHandler):
    """Holds its first batch until the test lets it go."""

    def __init__(self) -> None:
        super().__init__("only", {})
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, deliveries: list[Delivery]) -> list[BaseException | None]:
        self.entered.set()
        await self.release.wait()
        return await super().handle(deliveries)


@pytest.mark.parametrize("runtime_class", [SharedRuntime, OrderedRuntime])
async def test_a_stop_requested_mid_batch_lets_the_batch_finish_and_reads_nothing_more(
    servers: TestServers, redis: Redis, key_prefix: str,
    runtime_class: type[ConsumerRuntime[Any]],
) -> None:
    handler = BlockingHandler()
    runtime = _runtime(runtime_class, servers, redis, key_prefix, handler, batch_size=3)
    await _append(redis, key_prefix, 6)
    task = asyncio.create_task(runtime.run())
    await asyncio.wait_for(handler.entered.wait(), timeout=10)
    runtime.request_stop()
    await asyncio.sleep(0.2)  # a stopping runtime must still wait for its batch
    assert not task.done()
    handler.release.set()
    await asyncio.wait_for(task, timeout=10)

    assert handler.batches == [[("event-0", 1), ("event-1", 1), ("event-2", 1)]]
    stream = Keys(key_prefix, 1).stream(0)
    if runtime_class is OrderedRuntime:
        # It read the next batch ahead while the first was handled: that batch stays pending,
        # unhandled, and the next lease holder adopts it before reading anything new.
        pending = await redis.xpending_range(stream, GROUP, min="-", max="+", count=10)
        ahead = await redis.xrange(stream, min=pending[0]["message_id"], max="+")
        assert [fields[b"id"] for _id, fields in ahead] == [b"event-3", b"event-4", b"event-5"]
        assert len(pending) == 3
        return
    assert await _pending(redis, key_prefix) == 0
    unread = await redis.xreadgroup(GROUP, "probe", {stream: ">"})
    assert [fields[b"id"] for _id, fields in unread[0][1]] == [b"event-3", b"event-4", b"event-5"]


# -- entries as read ------------------------------------------------------------------------


async def _append_odd_entries(redis: Redis, key_prefix: str) -> None:
    """Between two plain events: one of an unknown schema version, one whose body does not
    decode, one with its fields in another order, an operator retry for this group and one
    for another group."""
    stream = Keys(key_prefix, 1).stream(0)
    await _append(redis, key_prefix, 1)
    await redis.xadd(stream, {"type": "SummaryRequested", "v": "99", "id": "x", "at": "0",
                              "body": "{}"})
    await redis.xadd(stream, {"type": "Garbage", "v": "1", "id": "y", "at": "0",
                              "body": "not json"})
    reordered = encode_event(SummaryRequested(event_id="event-reordered", occurred_at=1,
                                              user_id="u1"))
    await redis.xadd(stream, dict(reversed(reordered.items())))  # type: ignore[arg-type]
    for event_id, group in (("event-retried", GROUP), ("event-other-group", "replier")):
        fields = encode_event(SummaryRequested(event_id=event_id, occurred_at=1, user_id="u1"))
        await redis.xadd(stream, {**fields, b"only_group": group.encode(),  # type: ignore[arg-type]
                                  b"retry_of": b"1-1"})
    await _append(redis, key_prefix, 1, start=1)


@pytest.mark.parametrize("runtime_class", [OrderedRuntime, SharedRuntime])
async def test_odd_entries_read_are_settled_as_claimed_ones_are_and_the_rest_flow_in_order(
    servers: TestServers, redis: Redis, key_prefix: str,
    runtime_class: type[ConsumerRuntime[Any]],
) -> None:
    retried: list[tuple[str, bool]] = []

    def outcome(delivery: Delivery) -> None:
        retried.append((delivery.event.event_id, delivery.operator_retry))

    handler = (LeasedStubHandler("only", {}, outcome) if runtime_class is OrderedRuntime
               else StubHandler(outcome))
    await ensure_group(redis, Keys(key_prefix, 1).stream(0), GROUP)
    await _append_odd_entries(redis, key_prefix)
    runtime = _runtime(runtime_class, servers, redis, key_prefix, handler)
    async with _running(runtime):
        await _until(lambda: len(handler.handled) >= 4)
        await _until_all_acked(redis, key_prefix)
    assert retried == [("event-0", False), ("event-reordered", False), ("event-retried", True),
                       ("event-1", False)]
    version, body = await _dead_letters(redis, key_prefix)
    assert version[b"error"].startswith(b"undecodable: schema version 99 is not supported")
    assert body[b"error"].startswith(b"undecodable: body does not decode")
    assert (body[b"event_type"], body[b"event_body"], body[b"attempts"]) == (
        b"Garbage", b"not json", b"1")
