"""``page``: a console template with what every page needs (CSRF token, active tab)."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.response import Template

from app.console.access import access_of, session_of

__all__ = ["page"]


def page(request: Request[Any, Any, Any], template_name: str, nav: str, **context: Any
         ) -> Template:
    """Render ``template_name`` for the signed-in operator of ``request``."""
    csrf = access_of(request).signer.csrf_token(session_of(request))
    return Template(template_name=template_name, context={"csrf": csrf, "nav": nav, **context})
