"""``/webhooks/whatsapp``: Meta's verification handshake and message deliveries."""

from __future__ import annotations

import asyncio
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
from redis.exceptions import RedisClusterException, RedisError

from app.ingress.parse_webhook import (
    MalformedWebhook,
    ParsedWebhook,
    events_from_texts,
    parse_webhook,
    status_event,
    unreadable_event,
)
from app.ingress.signature import signature_is_valid, tokens_match
from app.platform.clock import now_ms
from app.platform.identities import Resolution
from app.platform.metrics import (
    APPEND_SECONDS,
    DELIVERY_FAILURES,
    DELIVERY_STATUSES,
    UNREADABLE_MESSAGES,
    WEBHOOKS,
)
from app.platform.sender_appends import SenderAppends
from app.platform.settings import Settings
from schema.events import DeliveryStatusReceived, MessageReceived, MessageUnreadable

log = logging.getLogger("mecove.ingress")

MAX_BODY_BYTES = 1024 * 1024
WEBHOOK_PATH = "/webhooks/whatsapp"
OK_BODY = b'{"ok":true}'
# Bound once: ``labels(...)`` looks the child up under a lock on every call.
_ACCEPTED = WEBHOOKS.labels("accepted")
_DUPLICATE = WEBHOOKS.labels("duplicate")


def _json(status: int, body: bytes) -> Response[bytes]:
    return Response(content=body, status_code=status, media_type="application/json")


def _error_body(message: str) -> bytes:
    return b'{"ok":false,"error":"' + message.encode() + b'"}'


class WhatsAppWebhookController(Controller):
    path = WEBHOOK_PATH

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
        try:
            body = await request.body()
        except RequestEntityTooLarge:
            WEBHOOKS.labels("too_large").inc()
            raise
        status, answer = await answer_delivery(
            body, request.headers.get("x-hub-signature-256"), state.settings, state.appends)
        return _json(status, answer)


async def answer_delivery(body: bytes, signature: str | None, settings: Settings,
                          appends: SenderAppends) -> tuple[int, bytes]:
    """A delivery's body and ``X-Hub-Signature-256`` -> the HTTP status and JSON body to
    answer: 200 only once its messages are in the log, 401 bad signature, 400 not JSON, 503
    the log is unavailable (Meta redelivers). Shared by the Litestar route and the raw ASGI
    path (``webhook_fast_path``) so both answer exactly alike."""
    if settings.whatsapp_app_secret and not signature_is_valid(
        body, signature, settings.whatsapp_app_secret
    ):
        WEBHOOKS.labels("rejected").inc()
        log.warning("webhook rejected: bad or missing signature")
        return HTTP_401_UNAUTHORIZED, _error_body("invalid signature")
    try:
        parsed = parse_webhook(body)
    except MalformedWebhook:
        WEBHOOKS.labels("malformed").inc()
        log.warning("webhook rejected: body is not JSON",
                    extra={"fields": {"bytes": len(body)}})
        return HTTP_400_BAD_REQUEST, _error_body("malformed JSON")
    if parsed.unknown_shape:
        WEBHOOKS.labels("ignored").inc()
        log.info("webhook ignored: not a WhatsApp webhook shape")
        return HTTP_200_OK, OK_BODY
    if not (parsed.texts or parsed.unreadable or parsed.statuses):
        WEBHOOKS.labels("ignored").inc()
        return HTTP_200_OK, OK_BODY
    started = time.perf_counter()
    try:
        appended = await _append_parsed(parsed, appends)
    except (RedisError, RedisClusterException, OSError) as exc:
        WEBHOOKS.labels("unavailable").inc()
        log.error("event log unavailable: answering 503 so Meta redelivers",
                  extra={"fields": {"error": type(exc).__name__}})
        return HTTP_503_SERVICE_UNAVAILABLE, _error_body("event log unavailable")
    APPEND_SECONDS.observe(time.perf_counter() - started)
    (_ACCEPTED if appended else _DUPLICATE).inc()
    return HTTP_200_OK, OK_BODY


async def _append_parsed(parsed: ParsedWebhook, appends: SenderAppends) -> bool:
    """Resolve the senders, then append texts, unreadable messages and statuses.

    Returns whether any new message was appended (statuses and unreadable messages count).
    """
    received_at = now_ms()
    texts = parsed.texts
    events: list[MessageReceived] = []

    def build(resolutions: list[Resolution]) -> list[MessageReceived]:
        events[:] = events_from_texts(texts, received_at, resolutions)
        return events

    others: list[MessageUnreadable | DeliveryStatusReceived] = []
    if parsed.unreadable or parsed.statuses:  # rare beside texts: no lists built otherwise
        others += [unreadable_event(m, received_at) for m in parsed.unreadable]
        others += [status_event(s, received_at) for s in parsed.statuses]
    entry_ids = await appends.append_texts([t.sender for t in texts], build) if texts else []
    if not others:
        if log.isEnabledFor(logging.DEBUG):
            _log_appended(events, entry_ids)
        return any(entry_ids)
    # Partitioned by their own id: neither kind belongs to a known user yet.
    await asyncio.gather(*(appends.event_log.append(e, user_id=e.event_id) for e in others))
    if log.isEnabledFor(logging.DEBUG):
        _log_appended(events, entry_ids)
    for other in others:
        if isinstance(other, MessageUnreadable):
            UNREADABLE_MESSAGES.labels(other.reason).inc()
            log.warning("message kept raw: this version cannot read it", extra={"fields": {
                "event_id": other.event_id, "reason": other.reason}})
        else:
            DELIVERY_STATUSES.labels(other.status).inc()
            if other.status == "failed":
                DELIVERY_FAILURES.labels(str(other.error_code)).inc()
                log.warning("Meta reports a reply as failed", extra={"fields": {
                    "event_id": other.event_id, "outbound_message_id": other.outbound_message_id,
                    "error_code": other.error_code}})
    return True


def _log_appended(events: list[MessageReceived], entry_ids: list[str | None]) -> None:
    """One debug line per message (at INFO not even the fields are built: one line per
    message cost ~10% of the ingress's CPU)."""
    for event, entry_id in zip(events, entry_ids, strict=True):
        log.debug(
            "message appended" if entry_id else "duplicate delivery ignored",
            extra={"fields": {"event_id": event.event_id, "message_id": event.message_id,
                              "user_id": event.user_id, "entry_id": entry_id}},
        )
