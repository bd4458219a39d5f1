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
