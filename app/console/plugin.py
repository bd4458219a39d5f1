"""``console_plugins``: the console as a Litestar plugin, registered by the ingress app.

The plugin adds one router under ``/console`` (its session hook and security headers apply to
console responses only), the static files and the Jinja templates. Without
``MECOVE_CONSOLE_TOKEN`` there is no plugin and no ``/console`` route at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from litestar import Response, Router
from litestar.config.app import AppConfig
from litestar.datastructures import ResponseHeader
from litestar.plugins import InitPluginProtocol
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from app.console.access import STATIC_PATH, ConsoleAccess, require_session
from app.console.conversation_pages import ConversationsController
from app.console.dead_letter_pages import DeadLettersController
from app.console.overview_page import OverviewController
from app.console.session import SessionSigner
from app.console.sign_in import SignInController, SignOutController
from app.console.throttle import SignInThrottle
from app.platform.settings import Settings

if TYPE_CHECKING:
    from litestar.plugins.jinja import JinjaTemplateEngine

__all__ = ["SECURITY_HEADERS", "ConsolePlugin", "console_plugins"]

# No inline script or style may run; nothing may frame the console; no URL leaks onwards.
SECURITY_HEADERS = (
    ("Content-Security-Policy",
     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
     "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
)
STATIC_DIRECTORY = Path(__file__).parent / "static"


async def _with_security_headers(response: Response) -> Response:
    response.headers.update(dict(SECURITY_HEADERS))
    return response


def _templates() -> TemplateConfig[JinjaTemplateEngine]:
    # Jinja is imported when the console is on (~1.6 MB the ingress holds for nothing when off).
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
    from litestar.plugins.jinja import JinjaTemplateEngine

    environment = Environment(
        loader=PackageLoader("app.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
    )
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(environment))


class ConsolePlugin(InitPluginProtocol):
    def __init__(self, settings: Settings) -> None:
        if not settings.console_token:
            raise ValueError("the console needs MECOVE_CONSOLE_TOKEN")
        self.access = ConsoleAccess(
            signer=SessionSigner(settings.console_token, settings.console_session_seconds),
            throttle=SignInThrottle(),
        )

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add the console's router, static files and templates to the app."""
        headers = [ResponseHeader(name=n, value=v) for n, v in SECURITY_HEADERS]
        router = Router(
            path="/console",
            route_handlers=[OverviewController, ConversationsController, DeadLettersController,
                            SignInController, SignOutController],
            before_request=require_session(self.access),
            response_headers=headers,
            include_in_schema=False,
        )
        static = create_static_files_router(path=STATIC_PATH, directories=[STATIC_DIRECTORY],
                                            name="console-static",
                                            after_request=_with_security_headers)
        app_config.route_handlers.extend([router, static])
        app_config.template_config = _templates()
        return app_config


def console_plugins(settings: Settings) -> list[ConsolePlugin]:
    """``[ConsolePlugin]`` when ``MECOVE_CONSOLE_TOKEN`` is set, else ``[]`` (console off)."""
    return [ConsolePlugin(settings)] if settings.console_token else []
