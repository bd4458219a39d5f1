"""``create_app``: every route and the lifespan of the ingress, in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State

from app.console.plugin import console_plugins
from app.ingress.debug_routes import DebugController
from app.ingress.health_routes import HealthController
from app.ingress.webhook_routes import WhatsAppWebhookController
from app.platform.database import open_database
from app.platform.eventlog.append import EventLog
from app.platform.redis_client import open_redis
from app.platform.settings import Settings


def create_app(settings: Settings) -> Litestar:
    """The ingress application; pools are opened and closed by its lifespan."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        redis = open_redis(settings.redis_url)
        pool = await open_database(settings.database_url)
        app.state.redis = redis
        app.state.pool = pool
        app.state.event_log = EventLog.from_settings(settings, redis)
        try:
            yield
        finally:
            await redis.aclose()
            await pool.close()

    handlers: list[type] = [WhatsAppWebhookController, HealthController]
    if settings.debug:
        handlers.append(DebugController)
    return Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        logging_config=None,  # keep our structured, secret-scrubbing handler
        state=State({"settings": settings}),
        plugins=console_plugins(settings),  # /console, only when MECOVE_CONSOLE_TOKEN is set
    )
