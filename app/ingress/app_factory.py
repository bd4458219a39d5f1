"""``create_app``: every route and the lifespan of the ingress, in one place."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from app.console.plugin import console_plugins
from app.ingress.debug_routes import DebugController
from app.ingress.health_routes import HealthController
from app.ingress.webhook_fast_path import IngressApp
from app.ingress.webhook_routes import WhatsAppWebhookController
from app.platform.identities import IdentityLinks
from app.platform.logs import configure_logging
from app.platform.sender_appends import SenderAppends
from app.platform.settings import Settings, load_settings, require_signed_webhooks
from app.platform.start_up_objects import start_up_objects_frozen
from app.wiring.clients import open_clients

log = logging.getLogger("mecove.ingress")


def openapi_config() -> OpenAPIConfig:
    """The OpenAPI document as JSON at ``/schema`` (and ``/schema/openapi.json``): the HTML
    viewers Litestar offers load their scripts from a CDN, blank when offline."""
    return OpenAPIConfig(title="MeCove", version=importlib.metadata.version("mecove"),
                         path="/schema",
                         render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])])


def create_app_from_environment() -> Litestar:
    """The ingress of a uvicorn worker process (``mecove api --workers N``): settings read from
    the environment the command line checked, logging configured as in every process."""
    settings = load_settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secrets)
    return create_app(settings)


def create_app(settings: Settings) -> IngressApp:
    """The ingress application; pools are opened and closed by its lifespan.

    Raises SettingsError when real replies would answer unsigned webhooks (see
    ``require_signed_webhooks``).
    """
    require_signed_webhooks(settings)
    if not settings.whatsapp_app_secret:
        log.warning("webhooks are accepted UNSIGNED (WHATSAPP_APP_SECRET is not set)%s",
                    "" if settings.whatsapp_dry_run
                    else " although replies are sent: MECOVE_ALLOW_UNSIGNED_WEBHOOKS=true")

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_clients(settings) as clients:
            app.state.redis = clients.redis
            app.state.pool = clients.pool
            app.state.event_log = clients.event_log
            app.state.identity_links = IdentityLinks(clients.redis, settings.key_prefix,
                                                     clients.event_log.writes)
            app.state.appends = SenderAppends(app.state.identity_links, clients.event_log)
            with start_up_objects_frozen() as frozen:  # out of every full collection's walk
                log.debug("start-up objects frozen", extra={"fields": {"objects": frozen}})
                yield

    handlers: list[type] = [WhatsAppWebhookController, HealthController]
    if settings.debug:
        handlers.append(DebugController)
    return IngressApp(
        route_handlers=handlers,
        lifespan=[lifespan],
        logging_config=None,  # keep our structured, secret-scrubbing handler
        state=State({"settings": settings}),
        plugins=console_plugins(settings),  # /console, only when MECOVE_CONSOLE_TOKEN is set
        openapi_config=openapi_config(),
    )
