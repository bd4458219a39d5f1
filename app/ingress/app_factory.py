"""``create_app``: every route and the lifespan of the ingress, in one place."""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from app.ingress.debug_routes import DebugController
from app.ingress.health_routes import HealthController
from app.ingress.webhook_routes import WhatsAppWebhookController
from app.platform.settings import Settings
from app.wiring.clients import open_clients


def openapi_config() -> OpenAPIConfig:
    """The OpenAPI document as JSON at ``/schema`` (and ``/schema/openapi.json``): the HTML
    viewers Litestar offers load their scripts from a CDN, blank when offline."""
    return OpenAPIConfig(title="MeCove", version=importlib.metadata.version("mecove"),
                         path="/schema",
                         render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])])


def create_app(settings: Settings) -> Litestar:
    """The ingress application; pools are opened and closed by its lifespan."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_clients(settings) as clients:
            app.state.redis = clients.redis
            app.state.pool = clients.pool
            app.state.event_log = clients.event_log
            yield

    handlers: list[type] = [WhatsAppWebhookController, HealthController]
    if settings.debug:
        handlers.append(DebugController)
    return Litestar(
        route_handlers=handlers,
        lifespan=[lifespan],
        logging_config=None,  # keep our structured, secret-scrubbing handler
        state=State({"settings": settings}),
        openapi_config=openapi_config(),
    )
