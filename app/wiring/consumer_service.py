"""The consumer groups of a process: handlers built from settings, started, run, closed.

``open_service(settings, groups)`` opens the clients, builds one handler per group, starts them
and yields a runtime for each; on exit every handler is closed, then the clients. ``consume``
is ``mecove consume``: that service run until SIGTERM / SIGINT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from prometheus_client import start_http_server
from redis.asyncio import Redis

from app.platform.runtime.consumer_runtime import ConsumerRuntime
from app.platform.runtime.handler import GroupHandler
from app.platform.runtime.process import run_until_signalled, runtime_for
from app.platform.settings import Settings
from app.wiring import GROUPS
from app.wiring.clients import Clients, open_clients
from consumers.replier.reply_handler import build_reply_handler
from consumers.summarizer.summary_handler import build_summary_handler
from projections.projector import Projector

__all__ = ["GROUPS", "ConsumerService", "build_handler", "consume", "open_service",
           "started_runtimes"]

HandlerFactory = Callable[[Settings, asyncpg.Pool, Redis], GroupHandler]



def _projector(settings: Settings, _pool: asyncpg.Pool, _redis: Redis) -> Projector:
    # The projector writes on connections of its own: each holds a partition's lease.
    return Projector.from_settings(settings)


_FACTORIES: dict[str, HandlerFactory] = {
    "projector": _projector,
    "replier": build_reply_handler,
    "summarizer": build_summary_handler,
}
assert set(_FACTORIES) == set(GROUPS), "every consumer group needs a handler factory"


def build_handler(group: str, settings: Settings, pool: asyncpg.Pool,
                  redis: Redis) -> GroupHandler:
    """The handler of consumer group ``group`` (one of ``GROUPS``), not started yet."""
    return _FACTORIES[group](settings, pool, redis)


@asynccontextmanager
async def started_runtimes(settings: Settings, redis: Redis, handlers: Sequence[GroupHandler]
                           ) -> AsyncIterator[list[ConsumerRuntime[Any]]]:
    """Start every handler and yield one runtime per handler (not running yet: the caller
    runs them). On exit every handler is closed, also when starting one failed."""
    try:
        for handler in handlers:
            await handler.start()
        yield [runtime_for(settings, redis, handler) for handler in handlers]
    finally:
        for handler in handlers:
            await handler.close()


@dataclass(frozen=True, slots=True)
class ConsumerService:
    """An opened consumer process: its clients, handlers and their runtimes."""

    clients: Clients
    handlers: list[GroupHandler]
    runtimes: list[ConsumerRuntime[Any]]


@asynccontextmanager
async def open_service(settings: Settings, groups: Sequence[str], *,
                       pool_max_size: int = 5) -> AsyncIterator[ConsumerService]:
    """Clients, the started handlers of ``groups`` and their runtimes; all closed on exit."""
    async with open_clients(settings, pool_max_size=pool_max_size) as clients:
        handlers = [build_handler(group, settings, clients.pool, clients.redis)
                    for group in groups]
        async with started_runtimes(settings, clients.redis, handlers) as runtimes:
            yield ConsumerService(clients, handlers, runtimes)


async def consume(settings: Settings, groups: Sequence[str]) -> None:
    """``mecove consume``: run ``groups`` until SIGTERM / SIGINT, then stop gracefully."""
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    async with open_service(settings, groups) as service:
        await run_until_signalled(service.runtimes)
