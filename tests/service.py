"""Running pieces of the service inside a test: the ingress client and consumer groups."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from litestar.testing import AsyncTestClient

from app.ingress.app_factory import create_app
from app.platform.runtime.consumer_runtime import ConsumerRuntime
from app.platform.runtime.handler import GroupHandler
from app.platform.settings import Settings
from app.wiring.clients import redis_client
from app.wiring.consumer_service import started_runtimes


@asynccontextmanager
async def ingress(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    """The real ingress app with its lifespan (pools open), driven in-process over ASGI."""
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@asynccontextmanager
async def consumers(
    settings: Settings, handlers: Sequence[GroupHandler]
) -> AsyncIterator[list[ConsumerRuntime[Any]]]:
    """Run consumer groups as background tasks, wired as ``mecove consume`` wires them;
    stopped (gracefully) on exit, then a runtime's failure, if any, is raised."""
    async with (redis_client(settings) as redis,
                started_runtimes(settings, redis, handlers) as runtimes):
        tasks = [asyncio.create_task(r.run()) for r in runtimes]
        try:
            yield runtimes
        finally:
            for runtime in runtimes:
                runtime.request_stop()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=15)
    for task in tasks:
        if task.done() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def eventually(
    check: Callable[[], Awaitable[object]], *, timeout: float = 10.0, interval: float = 0.05
) -> object:
    """Poll ``check`` until it returns a truthy value; fail with the last value on timeout."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
