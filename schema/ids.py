"""Deterministic ids, so that duplicates and replays converge on the same rows."""

import uuid

NAMESPACE = uuid.UUID("6f0e7c1a-4d0b-5a52-9c2e-6d65636f7665")


def identity_id_for(channel: str, channel_user_key: str) -> str:
    """UUIDv5 of ``channel:key``, e.g. ``whatsapp:+919130099484``."""
    return str(uuid.uuid5(NAMESPACE, f"{channel}:{channel_user_key}"))


def user_id_for(identity_id: str) -> str:
    """The stable user of an identity (one user per identity until identities are linked)."""
    return str(uuid.uuid5(NAMESPACE, f"user:{identity_id}"))


def message_id_for(identity_id: str, source_message_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{identity_id}:{source_message_id}"))


def event_id_for(kind: str, subject: str) -> str:
    """Event id of the one event of ``kind`` about ``subject`` (e.g. the message id)."""
    return str(uuid.uuid5(NAMESPACE, f"event:{kind}:{subject}"))
