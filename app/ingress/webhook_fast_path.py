"""``POST /webhooks/whatsapp`` as a raw ASGI handler, ahead of Litestar's per-request work.

Profiled under load, Litestar's routing, signature model, exception middleware and response
objects took more CPU per webhook than parsing, checking and appending it. Deliveries are the
one hot endpoint, so ``IngressApp`` answers them here: read the body (at most
``MAX_BODY_BYTES``, else 413), then ``answer_delivery`` — the same function the Litestar route
calls — and write its status and JSON body. Every other request, and the OpenAPI document of
this one, stays Litestar's.

Litestar adds Pydantic's plugins to every app when pydantic is importable (it is installed
for Piccolo and the Groq client). No route of the ingress takes or returns a Pydantic model,
and importing pydantic and its core costs the api process ~9 MB of its 100 MB budget, so
``IngressApp`` keeps Litestar's msgspec plugin only.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Litestar
from litestar.plugins import PluginProtocol
from litestar.plugins.core import MsgspecDIPlugin
from litestar.types import Message, Receive, Scope, Send

from app.ingress.webhook_routes import MAX_BODY_BYTES, OK_BODY, WEBHOOK_PATH, answer_delivery
from app.platform.metrics import WEBHOOKS

__all__ = ["IngressApp"]

log = logging.getLogger("mecove.ingress")

_TOO_LARGE = b'{"ok":false,"error":"request body too large"}'
_INTERNAL = b'{"ok":false,"error":"internal error"}'


class IngressApp(Litestar):
    """The ingress's Litestar application, with deliveries answered by ``_receive_delivery``."""

    @staticmethod
    def _get_default_plugins(plugins: list[PluginProtocol]) -> list[PluginProtocol]:
        """Litestar's defaults less Pydantic's (see the module docstring)."""
        return [*plugins, MsgspecDIPlugin()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] == "http" and scope["method"] == "POST" \
                and scope["path"] == WEBHOOK_PATH:
            await self._receive_delivery(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def _receive_delivery(self, scope: Scope, receive: Receive, send: Send) -> None:
        signature = None
        too_large = False
        for name, value in scope["headers"]:  # one pass for both headers read here
            if name == b"x-hub-signature-256":
                if signature is None:
                    signature = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
                too_large = True
        body: bytes | None = None
        if not too_large:
            message = await receive()  # nearly always the whole body, in one message
            body = message.get("body", b"")
            if message["type"] != "http.request" or message.get("more_body", False) \
                    or len(body) > MAX_BODY_BYTES:
                body = await _read_body(receive, message)
        if body is None:
            WEBHOOKS.labels("too_large").inc()
            await _answer(send, 413, _TOO_LARGE)
            return
        # The state's dict, not ``state.settings``: ``State.__getattr__`` runs only after the
        # normal lookup has raised (and cleared) an AttributeError, ~5 k instructions a name.
        values = self.state._state
        try:
            status, answer = await answer_delivery(body, signature, values["settings"],
                                                   values["appends"])
        except Exception:
            log.exception("webhook failed")  # as Litestar would: a 500, the error logged
            status, answer = 500, _INTERNAL
        if status == 200 and answer is OK_BODY:  # nearly every delivery: messages built once
            await send(_OK_START)  # type: ignore[arg-type]
            await send(_OK_BODY)  # type: ignore[arg-type]
            return
        await _answer(send, status, answer)


async def _read_body(receive: Receive, message: Message) -> bytes | None:
    """The whole request body, from its first ``message`` on, or None when it is larger
    than ``MAX_BODY_BYTES``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] != "http.request":
            break  # the client went away; the answer will not be read
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
        message = await receive()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _start(status: int, body: bytes) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]}


# The answer to nearly every delivery, built once (the server only reads these messages).
_OK_START = _start(200, OK_BODY)
_OK_BODY = {"type": "http.response.body", "body": OK_BODY}


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send(_start(status, body))  # type: ignore[arg-type]
    await send({"type": "http.response.body", "body": body})
