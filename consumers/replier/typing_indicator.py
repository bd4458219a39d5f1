"""The "typing…" a user sees while the replier asks the LLM: once per inbound message.

``show`` marks the inbound message read with a typing indicator (one Graph call), at most once
per message (a Redis marker taken with SET NX, so a retry or a peer process does not repeat
it). It never raises and never takes longer than its short timeout: a failure is logged and
the reply goes on. It is not a send: no outcome, no pacing, no send metric.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

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

    async def show(self, message: MessageReceived) -> None:
        """Mark ``message`` read with "typing…", unless that was done before; never raises."""
        try:
            async with asyncio.timeout(self.timeout_s):
                if not await self.redis.set(self._marker(message), "1", nx=True,
                                            ex=MARKER_TTL_S):
                    return
                await self.graph.show_typing(message.source_message_id)
        except Exception as exc:  # noqa: BLE001 - a timeout or any failure never fails the reply
            log.warning("typing indicator failed; replying anyway", extra={"fields": {
                "message_id": message.message_id, "error": type(exc).__name__}})
