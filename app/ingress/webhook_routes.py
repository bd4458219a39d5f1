"""``/webhooks/whatsapp``: Meta's verification handshake and message deliveries."""

from __future__ import annotations

import logging
import time

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from redis.exceptions import RedisError

from app.ingress.parse_webhook import MalformedWebhook, events_from_texts, parse_webhook
from app.ingress.signature import signature_is_valid, tokens_match
from app.platform.eventlog.append import EventLog
from app.platform.metrics import APPEND_SECONDS, WEBHOOKS
from app.platform.settings import Settings

log = logging.getLogger("mecove.ingress")

MAX_BODY_BYTES = 1024 * 1024
OK_BODY = b'{"ok":true}'


def _json(status: int, body: bytes) -> Response[bytes]:
    return Response(content=body, status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response[bytes]:
    return _json(status, b'{"ok":false,"error":"' + message.encode() + b'"}')


class WhatsAppWebhookController(Controller):
    path = "/webhooks/whatsapp"

    @get(sync_to_thread=False, media_type="text/plain")
    def verify(self, request: Request, state: State) -> Response[str]:
        """Meta's subscription check: echo ``hub.challenge`` when the token matches."""
        settings: Settings = state.settings
        params = request.query_params
        expected = settings.whatsapp_verify_token
        if (
            expected
            and params.get("hub.mode") == "subscribe"
            and tokens_match(params.get("hub.verify_token"), expected)
        ):
            return Response(
                content=params.get("hub.challenge") or "",
                media_type="text/plain",
                status_code=HTTP_200_OK,
            )
        log.warning("webhook verification refused")
        return Response(
            content="forbidden", media_type="text/plain", status_code=HTTP_403_FORBIDDEN
        )

    @post(request_max_body_size=MAX_BODY_BYTES, status_code=HTTP_200_OK)
    async def receive(self, request: Request, state: State) -> Response[bytes]:
        """Append one MessageReceived per new text message; 200 only once they are in the log."""
        settings: Settings = state.settings
        try:
            body = await request.body()
        except RequestEntityTooLarge:
            WEBHOOKS.labels("too_large").inc()
            raise
        if settings.whatsapp_app_secret and not signature_is_valid(
            body, request.headers.get("x-hub-signature-256"), settings.whatsapp_app_secret
        ):
            WEBHOOKS.labels("rejected").inc()
            log.warning("webhook rejected: bad or missing signature")
            return _error(HTTP_401_UNAUTHORIZED, "invalid signature")
        try:
            parsed = parse_webhook(body)
        except MalformedWebhook:
            WEBHOOKS.labels("malformed").inc()
            log.warning("webhook rejected: body is not JSON",
                        extra={"fields": {"bytes": len(body)}})
            return _error(HTTP_400_BAD_REQUEST, "malformed JSON")
        if parsed.unknown_shape:
            WEBHOOKS.labels("ignored").inc()
            log.info("webhook ignored: not a WhatsApp webhook shape")
            return _json(HTTP_200_OK, OK_BODY)
        if not parsed.texts:
            WEBHOOKS.labels("ignored").inc()
            return _json(HTTP_200_OK, OK_BODY)
        events = events_from_texts(parsed.texts, received_at_ms=time.time_ns() // 1_000_000)
        event_log: EventLog = state.event_log
        started = time.perf_counter()
        try:
            entry_ids = await event_log.append_messages(events)
        except (RedisError, OSError) as exc:
            WEBHOOKS.labels("unavailable").inc()
            log.error("event log unavailable: answering 503 so Meta redelivers",
                      extra={"fields": {"error": type(exc).__name__}})
            return _error(HTTP_503_SERVICE_UNAVAILABLE, "event log unavailable")
        APPEND_SECONDS.observe(time.perf_counter() - started)
        WEBHOOKS.labels("accepted" if any(entry_ids) else "duplicate").inc()
        for event, entry_id in zip(events, entry_ids, strict=True):
            log.debug(  # one line per message costs ~10% of the ingress's CPU at INFO
                "message appended" if entry_id else "duplicate delivery ignored",
                extra={"fields": {"event_id": event.event_id, "message_id": event.message_id,
                                  "entry_id": entry_id}},
            )
        return _json(HTTP_200_OK, OK_BODY)
