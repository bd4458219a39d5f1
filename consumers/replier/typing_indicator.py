"""The "typing…" a user sees while the replier asks the LLM: once per inbound message.

``show_claimed`` marks the inbound message read with a typing indicator (one Graph call), at
most once per message (a Redis marker taken with SET NX, ``queue_claim``, in the round trip
that reads the conversation, so a retry or a peer process does not repeat it). It never
raises and never takes longer than its short timeout: a failure is logged and the reply goes
on. It is not a send: no outcome, no pacing, no send metric.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from app.platform.eventlog.keys import Keys
from consumers.whatsapp.graph_client import GraphClient
from schema.events import MessageReceived

__all__ = ["TypingIndicator"]

log = logging.getLogger("mecove.replier")

MARKER_TTL_S = 86_400


class TypingIndicator:
    """Shows "typing…" for inbound messages through ``graph``."""

    def __init__(self, redis: Redis, keys: Keys, graph: GraphClient, *,
                 timeout_s: float = 2.0) -> None:
        self.redis = redis
        self.keys = keys
        self.graph = graph
        self.timeout_s = timeout_s

    def _marker(self, message: MessageReceived) -> str:
        partition = self.keys.partition_of(message.user_id)
        return self.keys.key(partition, f"typing:{message.message_id}")

    def queue_claim(self, pipe: Pipeline, message: MessageReceived) -> None:
        """Add the once-per-message marker (SET NX) to ``pipe``, for a caller that reads other
        things in the same round trip; pass its answer to ``show_claimed``."""
        pipe.set(self._marker(message), "1", nx=True, ex=MARKER_TTL_S)

    async def show_claimed(self, message: MessageReceived, claimed: object) -> None:
        """Mark ``message`` read with "typing…" when ``claimed`` (the answer of the queued SET
        NX) says this is the first time; never raises, never takes longer than the timeout."""
        if not claimed or isinstance(claimed, BaseException):
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.graph.show_typing(message.source_message_id)
        except Exception as exc:  # noqa: BLE001 - a timeout or any failure never fails the reply
            self._log_failure(message, exc)

    @staticmethod
    def _log_failure(message: MessageReceived, error: BaseException) -> None:
        log.warning("typing indicator failed; replying anyway", extra={"fields": {
            "message_id": message.message_id, "error": type(error).__name__}})
