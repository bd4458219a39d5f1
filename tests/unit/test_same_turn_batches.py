"""Calls made in one event-loop turn share one batched run; each caller gets its own answers."""

from __future__ import annotations

import asyncio

import pytest

from app.platform.same_turn_batches import SameTurnBatches


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.runs: list[list[int]] = []
        self.fail = fail

    async def run(self, items: list[int]) -> list[int]:
        self.runs.append(items)
        if self.fail:
            raise ConnectionError("redis down")
        return [item * 10 for item in items]


async def test_callers_of_the_same_turn_share_one_run_and_get_their_own_answers() -> None:
    recorder = Recorder()
    batches = SameTurnBatches(recorder.run)
    answers = await asyncio.gather(batches.submit([1, 2]), batches.submit([3]),
                                   batches.submit([4, 5, 6]))
    assert answers == [[10, 20], [30], [40, 50, 60]]
    assert recorder.runs == [[1, 2, 3, 4, 5, 6]]


async def test_a_failed_run_fails_every_caller_of_its_batch() -> None:
    batches = SameTurnBatches(Recorder(fail=True).run)
    results = await asyncio.gather(batches.submit([1]), batches.submit([2]),
                                   return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]


async def test_callers_beyond_the_limit_go_in_the_next_run() -> None:
    recorder = Recorder()
    batches = SameTurnBatches(recorder.run, max_callers=2)
    answers = await asyncio.gather(*(batches.submit([n]) for n in range(5)))
    assert answers == [[0], [10], [20], [30], [40]]
    assert recorder.runs == [[0, 1], [2, 3], [4]]


async def test_callers_of_later_turns_get_runs_of_their_own() -> None:
    recorder = Recorder()
    batches = SameTurnBatches(recorder.run)
    assert await batches.submit([1]) == [10]
    assert await batches.submit([]) == []
    assert await batches.submit([2]) == [20]
    assert recorder.runs == [[1], [2]]


@pytest.mark.parametrize("count", [1, 7])
async def test_every_item_is_run_exactly_once(count: int) -> None:
    recorder = Recorder()
    batches = SameTurnBatches(recorder.run, max_callers=3)
    await asyncio.gather(*(batches.submit([n]) for n in range(count)))
    assert sorted(i for run in recorder.runs for i in run) == list(range(count))


async def test_with_one_run_at_a_time_callers_wait_and_share_the_next_run() -> None:
    started: list[list[int]] = []
    release = asyncio.Event()

    async def run(items: list[int]) -> list[int]:
        started.append(items)
        await release.wait()
        return [item * 10 for item in items]

    batches = SameTurnBatches(run, max_running=1)
    first = asyncio.ensure_future(batches.submit([1]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(batches.submit([n])) for n in (2, 3)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert started == [[1]]  # 2 and 3 wait while the first run is in flight
    release.set()
    assert await first == [10]
    assert [await call for call in later] == [[20], [30]]
    assert started == [[1], [2, 3]]


async def test_with_one_run_at_a_time_a_failed_run_still_starts_the_next() -> None:
    calls: list[list[int]] = []

    async def run(items: list[int]) -> list[int]:
        calls.append(items)
        await asyncio.sleep(0)
        if items == [1]:
            raise ConnectionError("redis down")
        return items

    batches = SameTurnBatches(run, max_running=1)
    first = asyncio.ensure_future(batches.submit([1]))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    second = asyncio.ensure_future(batches.submit([2]))
    with pytest.raises(ConnectionError):
        await first
    assert await second == [2]
    assert calls == [[1], [2]]


async def test_with_two_runs_in_flight_a_third_waits_and_runs_take_at_most_max_callers() -> None:
    started: list[list[int]] = []
    releases: list[asyncio.Event] = []

    async def run(items: list[int]) -> list[int]:
        started.append(items)
        release = asyncio.Event()
        releases.append(release)
        await release.wait()
        return [item * 10 for item in items]

    async def turns(count: int) -> None:  # enough loop turns for the runs to start
        for _ in range(count):
            await asyncio.sleep(0)

    batches = SameTurnBatches(run, max_callers=2, max_running=2)
    first = [asyncio.ensure_future(batches.submit([n])) for n in (1, 2, 3)]
    await turns(6)
    assert started == [[1, 2], [3]]  # two runs: the cap split the turn's three callers
    later = [asyncio.ensure_future(batches.submit([n])) for n in (4, 5, 6)]
    await turns(6)
    assert started == [[1, 2], [3]]  # 4, 5 and 6 wait while two runs are in flight
    releases[1].set()
    assert await first[2] == [30]
    await turns(6)
    assert started == [[1, 2], [3], [4, 5]]  # one slot freed: one run of at most two callers
    releases[0].set()
    assert [await call for call in first[:2]] == [[10], [20]]
    await turns(6)
    assert started == [[1, 2], [3], [4, 5], [6]]
    for release in releases[2:]:
        release.set()
    assert [await call for call in later] == [[40], [50], [60]]
