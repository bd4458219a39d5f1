"""Who may see the console: the session check and CSRF check run before every console handler.

``ConsoleAccess`` holds the signer and the throttle of one app. ``require_session`` is the
console router's ``before_request`` hook: a request without a valid session cookie is sent to
the sign-in page (GET) or refused with 401; a POST without its session's CSRF token is refused
with 403. A ``?token=`` on a GET signs in (the link ``mecove dev`` prints) and redirects to the
same page without the token, so it leaves the address bar at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.response import Redirect
from litestar.status_codes import (
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_429_TOO_MANY_REQUESTS,
)

from app.console.session import Session, SessionSigner
from app.console.throttle import SignInThrottle

__all__ = [
    "CSRF_FIELD",
    "SESSION_COOKIE",
    "ConsoleAccess",
    "access_of",
    "client_of",
    "session_cookie",
    "session_of",
    "require_session",
    "too_many_attempts",
]

SESSION_COOKIE = "mecove_console"
CSRF_FIELD = "csrf"
CONSOLE_PATH = "/console"
SIGN_IN_PATH = "/console/login"
STATIC_PATH = "/console/static"


@dataclass(frozen=True, slots=True)
class ConsoleAccess:
    signer: SessionSigner
    throttle: SignInThrottle


def client_of(request: Request[Any, Any, Any]) -> str:
    """The address a sign-in attempt is throttled under."""
    return request.client.host if request.client else "unknown"


def session_cookie(request: Request[Any, Any, Any], value: str, max_age_s: int) -> Cookie:
    """The session cookie: HttpOnly, SameSite=Strict, Secure over HTTPS, console paths only."""
    return Cookie(key=SESSION_COOKIE, value=value, max_age=max_age_s, path=CONSOLE_PATH,
                  httponly=True, samesite="strict", secure=request.url.scheme == "https")


def session_of(request: Request[Any, Any, Any]) -> Session:
    """The session ``require_session`` found (only inside console handlers)."""
    return request.state.console_session  # type: ignore[no-any-return]


def access_of(request: Request[Any, Any, Any]) -> ConsoleAccess:
    """The console's signer and throttle (``require_session`` puts them on every request)."""
    return request.state.console_access  # type: ignore[no-any-return]


def too_many_attempts(wait_ms: int) -> Response[str]:
    return Response(content="Too many wrong tokens; try again later.\n",
                    status_code=HTTP_429_TOO_MANY_REQUESTS, media_type="text/plain",
                    headers={"Retry-After": str(max(1, wait_ms // 1000))})


def _without_token(request: Request[Any, Any, Any]) -> str:
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    query = "&".join(f"{k}={v}" for k, v in kept)
    return request.url.path + (f"?{query}" if query else "")


def _sign_in_by_link(request: Request[Any, Any, Any], access: ConsoleAccess, given: str
                     ) -> Response[Any]:
    client = client_of(request)
    wait = access.throttle.wait_ms(client)
    if wait:
        return too_many_attempts(wait)
    if not access.signer.token_is_right(given):
        access.throttle.record_failure(client)
        return Response(content="Wrong console token.\n", status_code=HTTP_401_UNAUTHORIZED,
                        media_type="text/plain")
    access.throttle.record_success(client)
    redirect = Redirect(_without_token(request), status_code=303)
    redirect.cookies.append(session_cookie(request, access.signer.issue(),
                                           access.signer.ttl_ms // 1000))
    return redirect


SessionHook = Callable[[Request[Any, Any, Any]], Awaitable[Response[Any] | None]]


def require_session(access: ConsoleAccess) -> SessionHook:
    """The console router's ``before_request`` hook for ``access``."""

    async def hook(request: Request[Any, Any, Any]) -> Response[Any] | None:
        request.state.console_access = access
        path = request.url.path
        if path.startswith(SIGN_IN_PATH) or path.startswith(STATIC_PATH):
            return None  # the sign-in page checks its own form token
        if request.method == "GET" and "token" in request.query_params:
            return _sign_in_by_link(request, access, request.query_params["token"])
        session = access.signer.verify(request.cookies.get(SESSION_COOKIE))
        if session is None:
            if request.method in ("GET", "HEAD"):
                return Redirect(SIGN_IN_PATH, status_code=303)
            return Response(content="Sign in first.\n", status_code=HTTP_401_UNAUTHORIZED,
                            media_type="text/plain")
        request.state.console_session = session
        if request.method not in ("GET", "HEAD"):
            form = await request.form()
            given = form.get(CSRF_FIELD)
            if not access.signer.csrf_is_right(session, given if isinstance(given, str)
                                               else None):
                return Response(content="Missing or wrong CSRF token.\n",
                                status_code=HTTP_403_FORBIDDEN, media_type="text/plain")
        return None

    return hook
