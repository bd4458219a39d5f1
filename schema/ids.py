"""Deterministic ids, so that duplicates and replays converge on the same rows."""

import hashlib
import uuid
from functools import lru_cache

NAMESPACE = uuid.UUID("6f0e7c1a-4d0b-5a52-9c2e-6d65636f7665")
_NAMESPACE_BYTES = NAMESPACE.bytes


# The RFC 4122 variant bits (10xx) set in the first hex digit of the fourth group.
_VARIANT_DIGIT = {digit: "89ab"[int(digit, 16) & 0b11] for digit in "0123456789abcdef"}


# SHA-1 with the namespace hashed in, copied per id: making a new OpenSSL hash object fetches
# the algorithm each time (~900 instructions more than a copy, and slower, timeit).
_NAMESPACE_SHA1 = hashlib.sha1(_NAMESPACE_BYTES)  # noqa: S324 - UUIDv5 is SHA-1 by definition


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, name))`` at a sixth of the cost (it is on the ingress path):
    the version and variant bits are set in the hex digest's text."""
    sha1 = _NAMESPACE_SHA1.copy()
    sha1.update(name.encode())
    h = sha1.hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:32]}"


# The ingress asks for the ids of the same few senders again and again.
@lru_cache(maxsize=16_384)
def identity_id_for(channel: str, channel_user_key: str) -> str:
    """UUIDv5 of ``channel:key``, e.g. ``whatsapp:+919130099484``."""
    return _uuid5(f"{channel}:{channel_user_key}")


@lru_cache(maxsize=16_384)
def user_id_for(identity_id: str) -> str:
    """The stable user of an identity (one user per identity until identities are linked)."""
    return _uuid5(f"user:{identity_id}")


def message_id_for(identity_id: str, source_message_id: str) -> str:
    return _uuid5(f"{identity_id}:{source_message_id}")


def event_id_for(kind: str, subject: str) -> str:
    """Event id of the one event of ``kind`` about ``subject`` (e.g. the message id)."""
    return _uuid5(f"event:{kind}:{subject}")
