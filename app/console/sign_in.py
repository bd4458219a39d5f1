"""``/console/login`` (the token form) and ``/console/logout``.

The form carries a CSRF token bound to a short-lived pre-session cookie (there is no session
yet to bind it to); a wrong token is counted by the throttle and answered 401.
"""

from __future__ import annotations

import secrets
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import URLEncodedBody
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_401_UNAUTHORIZED, HTTP_403_FORBIDDEN

from app.console.access import (
    SESSION_COOKIE,
    ConsoleAccess,
    access_of,
    client_of,
    session_cookie,
    too_many_attempts,
)
from app.console.session import tokens_match

__all__ = ["SignInController", "SignOutController"]

SIGN_IN_COOKIE = "mecove_console_sign_in"
SIGN_IN_FORM_SECONDS = 600


def _sign_in_page(request: Request[Any, Any, Any], access: ConsoleAccess, *, failed: bool,
                  status_code: int = 200) -> Template:
    nonce = secrets.token_urlsafe(18)
    page = Template(template_name="login.html", status_code=status_code, context={
        "csrf": access.signer.sign_in_form_token(nonce), "failed": failed, "nav": None})
    page.cookies.append(Cookie(
        key=SIGN_IN_COOKIE, value=nonce, max_age=SIGN_IN_FORM_SECONDS, path="/console/login",
        httponly=True, samesite="strict", secure=request.url.scheme == "https"))
    return page


class SignInController(Controller):
    path = "/login"

    @get("/", sync_to_thread=False)
    def form(self, request: Request[Any, Any, Any]) -> Template | Redirect:
        """The token form, or the overview for someone already signed in."""
        access = access_of(request)
        if access.signer.verify(request.cookies.get(SESSION_COOKIE)) is not None:
            return Redirect("/console", status_code=303)
        return _sign_in_page(request, access, failed=False)

    @post("/", sync_to_thread=False, status_code=303)
    def sign_in(
        self, request: Request[Any, Any, Any], data: URLEncodedBody[dict[str, str]]
    ) -> Response[Any] | Template | Redirect:
        """Right token -> a session cookie and the overview; wrong -> 401; too many -> 429."""
        access = access_of(request)
        nonce = request.cookies.get(SIGN_IN_COOKIE, "")
        expected = access.signer.sign_in_form_token(nonce) if nonce else ""
        if not (nonce and tokens_match(data.get("csrf", ""), expected)):
            return Response(content="Missing or wrong CSRF token; reload the sign-in page.\n",
                            status_code=HTTP_403_FORBIDDEN, media_type="text/plain")
        client = client_of(request)
        wait = access.throttle.wait_ms(client)
        if wait:
            return too_many_attempts(wait)
        if not access.signer.token_is_right(data.get("token", "")):
            access.throttle.record_failure(client)
            return _sign_in_page(request, access, failed=True, status_code=HTTP_401_UNAUTHORIZED)
        access.throttle.record_success(client)
        redirect = Redirect("/console", status_code=303)
        redirect.cookies.append(session_cookie(request, access.signer.issue(),
                                               access.signer.ttl_ms // 1000))
        redirect.cookies.append(Cookie(key=SIGN_IN_COOKIE, value="", max_age=0,
                                       path="/console/login"))
        return redirect


class SignOutController(Controller):
    path = "/logout"

    @post("/", sync_to_thread=False, status_code=303)
    def sign_out(self) -> Redirect:
        """Forget the session cookie (the CSRF check ran before)."""
        redirect = Redirect("/console/login", status_code=303)
        redirect.cookies.append(Cookie(key=SESSION_COOKIE, value="", max_age=0, path="/console"))
        return redirect
