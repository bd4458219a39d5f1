"""Pick the runtime each handler needs, and run consumer groups until SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis

from app.platform.eventlog.keys import Keys
from app.platform.runtime.consumer_runtime import ConsumerRuntime
from app.platform.runtime.handler import GroupHandler, OrderedHandler
from app.platform.runtime.ordered_runtime import OrderedRuntime
from app.platform.runtime.retry_policy import RetryPolicy
from app.platform.runtime.shared_runtime import SharedRuntime
from app.platform.settings import Settings
from app.platform.start_up_objects import start_up_objects_frozen

log = logging.getLogger("mecove.consume")

# While the runtimes run, a young collection waits for this many net allocations (CPython's
# default: 700); a batch's containers are freed by reference counting (decision 0022).
YOUNG_THRESHOLD = 10_000


def runtime_for(settings: Settings, redis: Redis, handler: GroupHandler) -> ConsumerRuntime[Any]:
    """The runtime that runs ``handler``, configured from ``settings``: an ``OrderedRuntime``
    for an ``OrderedHandler`` (a lease per partition), a ``SharedRuntime`` for any other."""
    ordered = isinstance(handler, OrderedHandler)
    runtime_class: type[ConsumerRuntime[Any]] = OrderedRuntime if ordered else SharedRuntime
    extra: dict[str, Any] = {"linger_ms": settings.projector_linger_ms} if ordered else {}
    return runtime_class(
        **extra,
        redis=redis,
        redis_url=settings.redis_url,
        keys=Keys.from_settings(settings),
        handler=handler,
        consumer_name=settings.consumer_name,
        policy=RetryPolicy(
            max_attempts=settings.retry_max_attempts,
            base_delay_ms=settings.retry_base_delay_ms,
            factor=settings.retry_factor,
        ),
        batch_size=max(settings.batch_size, handler.min_batch_size),
        block_ms=settings.block_ms,
        visibility_timeout_ms=settings.visibility_timeout_ms,
    )


async def run_until_signalled(
    runtimes: Sequence[ConsumerRuntime[Any]],
    *,
    install_signals: bool = True,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Run every runtime; the first SIGTERM / SIGINT stops reading, lets in-flight work end."""
    loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: [r.request_stop() for r in runtimes])
    if on_started is not None:
        on_started()
    with start_up_objects_frozen(YOUNG_THRESHOLD):  # decision 0022
        await asyncio.gather(*(r.run() for r in runtimes))
