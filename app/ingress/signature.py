"""Meta's ``X-Hub-Signature-256``: HMAC-SHA256 of the raw body with the app secret."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

BLOCK_BYTES = 64  # SHA-256's block: the HMAC key is padded (or first hashed) to this size


@lru_cache(maxsize=8)
def _keyed(app_secret: str) -> tuple[hashlib._Hash, hashlib._Hash]:
    """SHA-256 states that have absorbed the key XOR ipad and the key XOR opad (RFC 2104).

    Copying them per body skips what one-shot ``hmac.digest`` redoes on every call (with
    OpenSSL 3: fetching the MAC, a context, hashing both pads): ~40 k instructions per
    webhook against ~29 k, the same digest (tests/unit/test_signature.py checks it against
    ``hmac``)."""
    key = app_secret.encode()
    if len(key) > BLOCK_BYTES:
        key = hashlib.sha256(key).digest()
    key = key.ljust(BLOCK_BYTES, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    return inner, outer


def _digest(body: bytes, app_secret: str) -> bytes:
    keyed_inner, keyed_outer = _keyed(app_secret)
    inner = keyed_inner.copy()
    inner.update(body)
    outer = keyed_outer.copy()
    outer.update(inner.digest())
    return outer.digest()


def _header(body: bytes, app_secret: str) -> bytes:
    """The header value Meta would send for ``body``, as bytes (what the check compares)."""
    return b"sha256=" + _digest(body, app_secret).hex().encode()


def sign_body(body: bytes, app_secret: str) -> str:
    """The header value Meta would send for ``body``."""
    return _header(body, app_secret).decode()


def signature_is_valid(body: bytes, header: str | None, app_secret: str) -> bool:
    """Constant-time check of the header against the body."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().encode(), _header(body, app_secret))


def tokens_match(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a verify token."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())
