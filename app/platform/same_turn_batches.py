"""Calls made in the same event-loop turn, answered by one batched call.

A busy ingress resolves the senders of many webhooks at once; each paying its own Redis round
trip cost more CPU than the rest of the request. ``SameTurnBatches(run)`` collects the items
of every ``submit`` made before the loop's next turn, runs ``run`` once on all of them (at most
``max_callers`` callers per run), and gives each caller the slice of answers for its own
items. A failure of the run is every caller's failure, so each still answers on its own terms
(e.g. 503 so Meta redelivers).

With ``max_running`` set, at most that many runs are in flight: callers that arrive while
they are wait, and join one run started as soon as one ends (decisions 0028, 0035). Fewer,
larger runs: each run's own cost (a script call's packing, write, read and reply) is shared by
more callers, at the price of at most one run's wait at saturation; with a slot free a run
starts on the next turn, as without the limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["SameTurnBatches"]

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class SameTurnBatches(Generic[Item, Answer]):
    """``await submit(items)`` == ``await run(items)``, but shared with same-turn callers.

    ``run`` must return one answer per item, in order."""

    def __init__(self, run: Callable[[list[Item]], Awaitable[list[Answer]]], *,
                 max_callers: int = 64, max_running: int | None = None) -> None:
        self._run = run
        self._max_callers = max_callers
        self._max_running = max_running
        self._waiting: list[tuple[list[Item], asyncio.Future[list[Answer]]]] = []
        self._scheduled = False
        self._running: set[asyncio.Future[None]] = set()

    async def submit(self, items: Sequence[Item]) -> list[Answer]:
        """The answers for ``items``, once the batch they joined has run."""
        if not items:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Answer]] = loop.create_future()
        self._waiting.append((list(items), future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        self._scheduled = False
        if not self._waiting or (self._max_running is not None
                                 and len(self._running) >= self._max_running):
            return  # ``_finished`` starts the waiting callers' run when one ends
        batch = self._waiting[:self._max_callers]
        self._waiting = self._waiting[self._max_callers:]
        if self._waiting:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)
        task = asyncio.ensure_future(self._answer(batch))
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[None]) -> None:
        self._running.discard(task)
        if self._waiting and not self._scheduled:
            self._start()

    async def _answer(self, batch: list[tuple[list[Item], asyncio.Future[list[Answer]]]]
                      ) -> None:
        try:
            answers = await self._run([item for items, _ in batch for item in items])
        except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        offset = 0
        for items, future in batch:
            if not future.done():
                future.set_result(answers[offset:offset + len(items)])
            offset += len(items)
