"""Replay's pages built in worker processes, so a second core does the reading and decoding.

Replay is a batch job on a machine whose PostgreSQL takes about a third of its CPU: in one
process, reading, opening and encoding the pages (Python, one core) was its bottleneck. Each
worker (``python -m projections.replay_worker``: a fresh interpreter that imports only what
building pages needs — ``multiprocessing``'s spawn would import the whole ``app.cli`` again,
and a fork would copy the parent's event loop and connections) opens its own connection and
``PageBuilder`` and builds the pages it is asked for, by range of log positions, in the order
asked; the parent only streams the ready COPY data, in log order.

Over the worker's stdin and stdout go length-prefixed pickles: first the connection's URL and
the master key, then ``(after, upto, limit)`` per page, answered by ``(True, page)`` or ``(False,
error)``. A worker's error is raised in the parent as itself (a ``ReplayWorkerError`` with its
text when it does not pickle); a worker that dies fails every page still asked of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import struct
import sys
from collections import deque
from pathlib import Path
from types import TracebackType

from app.platform.eventlog.content_crypto import MasterKeys
from projections.replay_pages import Position, ReadyPage

__all__ = ["FRAME", "PageWorkers", "ReplayWorkerError"]

FRAME = struct.Struct("!Q")  # the length of the pickle that follows
_ROOT = str(Path(__file__).resolve().parents[1])  # the checkout holding ``projections``


class ReplayWorkerError(RuntimeError):
    """A page worker failed with an error that could not travel as itself, or died."""


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.waiting: deque[asyncio.Future[ReadyPage | None]] = deque()
        self.reader = asyncio.create_task(self._read())

    def ask(self, after: Position, upto: Position, limit: int
            ) -> asyncio.Future[ReadyPage | None]:
        future: asyncio.Future[ReadyPage | None] = asyncio.get_running_loop().create_future()
        if self.reader.done():
            future.set_exception(ReplayWorkerError("replay worker is gone"))
            return future
        self.waiting.append(future)
        _send(self.process, (after, upto, limit))
        return future

    async def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            while True:
                ok, value = pickle.loads(await _receive(self.process.stdout))
                future = self.waiting.popleft()
                if future.cancelled():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except (asyncio.IncompleteReadError, ConnectionError, IndexError) as exc:
            code = await self.process.wait()
            while self.waiting:
                future = self.waiting.popleft()
                if not future.done():
                    future.set_exception(ReplayWorkerError(
                        f"replay worker exited with code {code} ({type(exc).__name__})"))


def _send(process: asyncio.subprocess.Process, message: object) -> None:
    assert process.stdin is not None
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    process.stdin.write(FRAME.pack(len(data)) + data)


async def _receive(stream: asyncio.StreamReader) -> bytes:
    (length,) = FRAME.unpack(await stream.readexactly(FRAME.size))
    return await stream.readexactly(length)


class PageWorkers:
    """``count`` worker processes building pages; ``async with`` starts and stops them."""

    def __init__(self, database_url: str, master: MasterKeys | None, count: int) -> None:
        self.database_url = database_url
        self.master = master
        self.count = count
        self._workers: list[_Worker] = []
        self._turn = 0

    def build(self, after: Position, upto: Position, limit: int
              ) -> asyncio.Future[ReadyPage | None]:
        """The page of the (at most ``limit``) events after ``after`` up to ``upto``
        (included), built by the next worker in turn."""
        worker = self._workers[self._turn % len(self._workers)]
        self._turn += 1
        return worker.ask(after, upto, limit)

    async def __aenter__(self) -> PageWorkers:
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": f"{_ROOT}{os.pathsep}{path}" if path else _ROOT}
        try:
            for _ in range(self.count):
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "projections.replay_worker",
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
                self._workers.append(_Worker(process))
                _send(process, (self.database_url, self.master))
        except BaseException:
            await self._stop(kill=True)
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self._stop(kill=error is not None)

    async def _stop(self, *, kill: bool) -> None:
        """Close each worker's stdin (it ends once done), or kill it; wait for it."""
        for worker in self._workers:
            process = worker.process
            if kill and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            elif process.stdin is not None:
                process.stdin.close()
            await process.wait()
            with contextlib.suppress(Exception):
                await worker.reader
