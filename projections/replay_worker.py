"""A replay page worker's process: ``python -m projections.replay_worker`` (started by
``replay_workers.PageWorkers``, which describes the exchange on stdin and stdout)."""

from __future__ import annotations

import asyncio
import pickle
import sys
from typing import BinaryIO

import asyncpg

from projections.replay_pages import PageBuilder
from projections.replay_workers import FRAME, ReplayWorkerError


def _read(stream: BinaryIO) -> object:
    """The next message; EOFError once the parent closed the pipe."""
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        raise EOFError
    (length,) = FRAME.unpack(head)
    data = stream.read(length)
    if len(data) < length:
        raise EOFError
    return pickle.loads(data)


def _write(stream: BinaryIO, message: object) -> None:
    try:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # an error that does not pickle: its text
        ok, error = message  # type: ignore[misc]
        data = pickle.dumps((ok, ReplayWorkerError(f"{type(error).__name__}: {error}")))
    stream.write(FRAME.pack(len(data)) + data)
    stream.flush()


async def _serve(source: BinaryIO, sink: BinaryIO) -> None:
    database_url, master = _read(source)  # type: ignore[misc]
    connection = await asyncpg.connect(database_url)
    try:
        builder = PageBuilder(connection, master)
        while True:
            try:
                after, upto, limit = _read(source)  # type: ignore[misc]
            except EOFError:
                return
            try:
                page = await builder.build(after, upto, limit)
            except Exception as exc:  # sent to the parent, which raises it
                _write(sink, (False, exc))
            else:
                _write(sink, (True, page))
    finally:
        await connection.close()


def main() -> int:
    asyncio.run(_serve(sys.stdin.buffer, sys.stdout.buffer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
