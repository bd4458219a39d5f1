"""An httpx transport for the replier's API calls: HTTP/1.1 keep-alive on asyncio, parsed by
httptools.

httpx's own transport (httpcore over anyio, h11 parsing) cost ~1.1 ms of CPU per request here,
against ~0.12 ms for the httpx client layer above it; a reply makes three requests. This
transport keeps a few connections per origin in a list and parses answers with httptools (C).
Clients keep httpx's API (``httpx.AsyncClient(transport=KeepAliveTransport())``), so the groq
SDK and the Graph client use it unchanged.

Errors are httpx's, raised where httpcore raises them, because callers judge from the type
whether a request may have left (``consumers/whatsapp/graph_client.send_fate``):

* ``PoolTimeout``, ``ConnectTimeout``, ``ConnectError``: before a byte was written;
* ``WriteTimeout``, ``WriteError``: while writing;
* ``ReadTimeout``, ``ReadError``, ``RemoteProtocolError`` (the server closed the connection
  or answered something that is not HTTP/1.1): after the request was written.

A connection is reused only when the answer said keep-alive, nothing arrived after it, the
server has not closed it (the event loop tells us; no syscall per request) and it was idle
less than ``keepalive_expiry_s``. Proxies are not spoken: ``transport_for_environment`` falls
back to httpx's transport when a proxy is configured.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.request
from collections.abc import Iterable
from typing import Any

import certifi
import httptools
import httpx

__all__ = ["CookielessAsyncClient", "KeepAliveTransport", "transport_for_environment"]

Origin = tuple[str, str, int]  # scheme, host, port
DEFAULT_PORTS = {"http": 80, "https": 443}


class _ServerClosed(Exception):
    """The connection ended before the answer was complete."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: writes a request, collects one answer at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self._parser: httptools.HttpResponseParser | None = None
        self._done: asyncio.Future[None] | None = None
        self._can_write: asyncio.Future[None] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._keep_alive = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._parser is None or self._done is None or self._done.done():
            self.close()  # bytes nobody asked for: this connection cannot be trusted again
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(httpx.RemoteProtocolError(f"malformed answer: {exc}"))
            self.close()

    def eof_received(self) -> bool:
        self.closed = True
        self._finish(_ServerClosed())
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish(_ServerClosed() if exc is None else httpx.ReadError(str(exc) or "lost"))
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    def pause_writing(self) -> None:
        self._can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
        self._can_write = None

    # -- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        # Asked here: once the callback returns, the parser has reset and says False.
        self._keep_alive = self._parser is not None and self._parser.should_keep_alive()
        self._finish(None)

    # -- one exchange ----------------------------------------------------------------------

    def _finish(self, error: BaseException | None) -> None:
        if self._done is not None and not self._done.done():
            if error is None:
                self._done.set_result(None)
            else:
                self._done.set_exception(error)

    async def exchange(self, request: bytes, write_timeout: float | None,
                       read_timeout: float | None) -> tuple[int, list[tuple[bytes, bytes]],
                                                             bytes, bool]:
        """Write ``request``; return status, headers, body and whether to keep the connection."""
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self._done = asyncio.get_running_loop().create_future()
        self._headers, self._body, self._keep_alive = [], [], False
        try:
            self.transport.write(request)
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
        if self._can_write is not None:
            try:
                async with asyncio.timeout(write_timeout):
                    await self._can_write
            except TimeoutError as exc:
                raise httpx.WriteTimeout("timed out writing the request") from exc
        try:
            async with asyncio.timeout(read_timeout):
                await self._done
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out waiting for the answer") from exc
        except _ServerClosed as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a complete response.") from exc
        keep = self._keep_alive and not self.closed
        status = self._parser.get_status_code()
        self._parser = None
        self.idle_since = time.monotonic()
        return status, self._headers, b"".join(self._body), keep

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """At most ``max_connections`` connections per origin, idle ones reused (newest first)."""

    def __init__(self, *, max_connections: int = 8, keepalive_expiry_s: float = 4.0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.max_connections = max_connections
        self.keepalive_expiry_s = keepalive_expiry_s
        self._ssl = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._slots: dict[Origin, asyncio.Semaphore] = {}

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=certifi.where())
        return self._ssl

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin: Origin = (url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme, 80))
        timeouts = request.extensions.get("timeout", {})
        slots = self._slots.get(origin)
        if slots is None:
            slots = self._slots[origin] = asyncio.Semaphore(self.max_connections)
        if slots.locked():  # wait for a free connection, at most the pool timeout
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await slots.acquire()
            except TimeoutError as exc:
                raise httpx.PoolTimeout("no connection free in time") from exc
        else:
            await slots.acquire()  # free: returns at once, no timer to arm and cancel
        connection: _Connection | None = None
        try:
            connection = self._reusable(origin) or await self._connect(origin,
                                                                      timeouts.get("connect"))
            status, headers, body, keep = await connection.exchange(
                _serialize(request, await request.aread()),
                timeouts.get("write"), timeouts.get("read"))
        except BaseException:
            if connection is not None:
                connection.close()
            slots.release()
            raise
        if keep:
            self._idle.setdefault(origin, []).append(connection)
        else:
            connection.close()
        slots.release()
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body),
                              extensions={"http_version": b"HTTP/1.1"})

    def _reusable(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if not connection.closed and now - connection.idle_since < self.keepalive_expiry_s:
                return connection
            connection.close()
        return None

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = self._ssl_context() if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                _transport, connection = await loop.create_connection(
                    _Connection, host, port, ssl=tls, server_hostname=host if tls else None)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return connection

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _serialize(request: httpx.Request, body: bytes) -> bytes:
    """The request line, headers and body as HTTP/1.1 bytes."""
    head = [request.method.encode(), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in _headers(request.headers.raw, body):
        head += [name, b": ", value, b"\r\n"]
    head.append(b"\r\n")
    return b"".join(head) + body


def _headers(raw: Iterable[tuple[bytes, bytes]], body: bytes
             ) -> Iterable[tuple[bytes, bytes]]:
    """httpx's headers, with the body's length when it gave none (a streamed body)."""
    has_length = False
    for name, value in raw:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            continue  # the body is sent whole, with its length
        has_length = has_length or lowered == b"content-length"
        yield name, value
    if not has_length and body:
        yield b"Content-Length", str(len(body)).encode()


def transport_for_environment(max_connections: int = 8) -> httpx.AsyncBaseTransport | None:
    """A ``KeepAliveTransport``, or None (httpx's own transport) when the environment names
    a proxy, which only httpx speaks."""
    proxies = urllib.request.getproxies()
    if any(proxies.get(scheme) for scheme in ("http", "https", "all")):
        return None
    return KeepAliveTransport(max_connections=max_connections)


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing: reading ``Set-Cookie`` built a urllib request per answer."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class CookielessAsyncClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that never stores cookies (the Graph and Groq APIs use none),
    sparing ~0.1 ms of CPU per request, and whose answers, once read, are freed by reference
    counting rather than by the cycle collector."""

    @property  # type: ignore[override]
    def cookies(self) -> httpx.Cookies:
        return _NO_COOKIES

    async def send(self, request: httpx.Request, **options: Any) -> httpx.Response:
        """httpx's ``send``; an answer it has read in full and closed drops its bound stream.

        httpx binds the answer's stream to the answer (``BoundAsyncStream``, to set
        ``elapsed`` on close), a reference cycle: each LLM call left ~35 objects (answer,
        request, URL, headers and their tuples) for the cycle collector, so the replier's
        young collections each freed ~9,000 of them in one 3–8 ms stop (decision 0034). A
        closed answer's stream is never read again (its body is kept; reading it again
        raises ``StreamConsumed``)."""
        response = await super().send(request, **options)
        if response.is_closed:
            response.stream = _READ_STREAM
        return response


_NO_COOKIES = _NoCookies()
_READ_STREAM = httpx.ByteStream(b"")  # what a read and closed answer holds instead
