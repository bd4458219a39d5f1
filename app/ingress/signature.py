"""Meta's ``X-Hub-Signature-256``: HMAC-SHA256 of the raw body with the app secret."""

from __future__ import annotations

import hmac


def sign_body(body: bytes, app_secret: str) -> str:
    """The header value Meta would send for ``body``."""
    # One-shot ``hmac.digest`` (OpenSSL's HMAC in one C call): no HMAC object per webhook.
    return "sha256=" + hmac.digest(app_secret.encode(), body, "sha256").hex()


def signature_is_valid(body: bytes, header: str | None, app_secret: str) -> bool:
    """Constant-time check of the header against the body."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().encode(), sign_body(body, app_secret).encode())


def tokens_match(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a verify token."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
