"""A built-in stand-in for Meta's Graph API send endpoint, used by ``mecove simulate``.

Answers ``POST /{version}/{phone_number_id}/messages`` as Meta does — 200 with
``{"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid..."}]}`` —
and hands each send to a callback, stamped with the time it arrived. Malformed sends get
Meta's error object (400, code 100). Stdlib ``http.server`` on 127.0.0.1 in a daemon thread.

It has no error scripts or latency switches: that is the test fake's job
(``tests/fakes/graph_api.py``), which product code does not import.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgspec

_MESSAGES_PATH = re.compile(r"^/v\d+\.\d+/(?P<phone_number_id>[^/?]+)/messages/?(\?.*)?$")
_MAX_BODY = 1 << 20


class _Text(msgspec.Struct):
    body: str


class _Context(msgspec.Struct):
    message_id: str


class OutboundMessage(msgspec.Struct):
    """The part of a send request that we read."""

    messaging_product: str
    to: str
    type: str = "text"
    text: _Text | None = None
    context: _Context | None = None


class _SentId(msgspec.Struct):
    id: str


class _Contact(msgspec.Struct):
    input: str
    wa_id: str


class _SendResponse(msgspec.Struct):
    messaging_product: str
    contacts: list[_Contact]
    messages: list[_SentId]


class _ErrorDetail(msgspec.Struct):
    message: str
    type: str
    code: int
    fbtrace_id: str


class _ErrorResponse(msgspec.Struct):
    error: _ErrorDetail


@dataclass(frozen=True, slots=True)
class ReceivedSend:
    """One accepted send: to whom, what, quoting which wamid (None: standalone), when."""

    phone_number_id: str
    to: str
    text: str
    context_message_id: str | None
    outbound_id: str
    received_at: float  # the fake's clock (time.monotonic by default)


class FakeGraphApi:
    """Serve until ``stop()``; ``on_send`` is called from the server's threads."""

    def __init__(self, on_send: Callable[[ReceivedSend], None], *, host: str = "127.0.0.1",
                 port: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self._on_send = on_send
        self._clock = clock
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeGraphApi:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="fake-graph-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeGraphApi:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def answer(self, path: str, body: bytes) -> tuple[int, bytes]:
        """Status and body of the response to a POST of ``body`` at ``path``."""
        match = _MESSAGES_PATH.match(path)
        if match is None:
            return _error(400, 2500, f"Unknown path components: {path}")
        try:
            message = msgspec.json.decode(body, type=OutboundMessage)
        except msgspec.DecodeError as exc:
            return _error(400, 100, f"(#100) Invalid parameter: {exc}")
        if message.messaging_product != "whatsapp" or not message.to.strip():
            return _error(400, 100, "(#100) messaging_product must be 'whatsapp' and to is "
                                    "required")
        if message.type != "text" or message.text is None or not message.text.body:
            return _error(400, 100, "(#100) The parameter text['body'] is required.")
        outbound_id = "wamid.FAKE" + secrets.token_hex(12).upper()
        self._on_send(ReceivedSend(
            phone_number_id=match["phone_number_id"],
            to=message.to,
            text=message.text.body,
            context_message_id=message.context.message_id if message.context else None,
            outbound_id=outbound_id,
            received_at=self._clock(),
        ))
        digits = re.sub(r"\D", "", message.to)
        return 200, msgspec.json.encode(_SendResponse(
            messaging_product="whatsapp",
            contacts=[_Contact(input=message.to, wa_id=digits)],
            messages=[_SentId(id=outbound_id)],
        ))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # answer without waiting for a delayed ACK
            protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects of Meta

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                if length > _MAX_BODY:
                    self._reply(*_error(413, 100, "(#100) Request too large"))
                    self.close_connection = True
                    return
                self._reply(*fake.answer(self.path, self.rfile.read(length)))

            def do_GET(self) -> None:  # noqa: N802
                self._reply(*_error(400, 100, f"Unsupported get request: {self.path}"))

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return None  # quiet: the simulator prints what matters

        return Handler


def _error(status: int, code: int, message: str) -> tuple[int, bytes]:
    return status, msgspec.json.encode(_ErrorResponse(error=_ErrorDetail(
        message=message, type="OAuthException", code=code,
        fbtrace_id="A" + secrets.token_urlsafe(16),
    )))
