"""Console sessions: a signed cookie with an expiry, and a CSRF token bound to it.

The cookie is ``<expires_ms>.<nonce>.<signature>``, signed with HMAC-SHA256 under a key derived
from ``MECOVE_CONSOLE_TOKEN``, so changing the token signs every operator out. The CSRF token
of a session is another HMAC of its nonce: a page can carry it, a cross-site form cannot know it.
Every comparison of secrets goes through ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from app.platform.clock import now_ms

__all__ = ["Session", "SessionSigner", "tokens_match"]


def tokens_match(given: str, expected: str) -> bool:
    """Constant-time equality of two secrets (as UTF-8 bytes)."""
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class Session:
    expires_ms: int
    nonce: str


class SessionSigner:
    """Issues and verifies session cookies and their CSRF tokens for one console token."""

    def __init__(self, console_token: str, ttl_seconds: int,
                 clock_ms: Callable[[], int] = now_ms) -> None:
        self._token = console_token
        self._key = hmac.new(console_token.encode(), b"mecove-console-session",
                             hashlib.sha256).digest()
        self.ttl_ms = ttl_seconds * 1000
        self.clock_ms = clock_ms

    def token_is_right(self, given: str) -> bool:
        """True when ``given`` is the console token (constant time)."""
        return tokens_match(given, self._token)

    def _sign(self, purpose: str, payload: str) -> str:
        return hmac.new(self._key, f"{purpose}:{payload}".encode(), hashlib.sha256).hexdigest()

    def issue(self, expires_ms: int | None = None) -> str:
        """A new session's cookie value; it expires ``ttl`` from now unless told otherwise."""
        expires = self.clock_ms() + self.ttl_ms if expires_ms is None else expires_ms
        payload = f"{expires}.{secrets.token_urlsafe(18)}"
        return f"{payload}.{self._sign('session', payload)}"

    def verify(self, cookie: str | None) -> Session | None:
        """The session of a cookie value; None when absent, forged, malformed or expired."""
        if not cookie:
            return None
        payload, _, signature = cookie.rpartition(".")
        expires, _, nonce = payload.partition(".")
        if not (expires.isdigit() and nonce and signature):
            return None
        if not hmac.compare_digest(signature.encode(), self._sign("session", payload).encode()):
            return None
        if int(expires) <= self.clock_ms():
            return None
        return Session(expires_ms=int(expires), nonce=nonce)

    def csrf_token(self, session: Session) -> str:
        """The CSRF token every form of this session carries."""
        return self._sign("csrf", session.nonce)

    def csrf_is_right(self, session: Session, given: str | None) -> bool:
        """True when ``given`` is this session's CSRF token (constant time)."""
        return given is not None and tokens_match(given, self.csrf_token(session))

    def sign_in_form_token(self, nonce: str) -> str:
        """The CSRF token of the sign-in form, bound to a short-lived pre-session cookie."""
        return self._sign("sign-in", nonce)
