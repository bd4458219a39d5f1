"""A real HTTP/1.1 server on a local port that answers every request through one function.

The Graph API stand-in of ``mecove simulate`` (``app.devtools.simulated_graph_api``) and the
test suite's fakes (``tests/fakes``) are built on it, so real clients (httpx, the groq SDK, a
service in another process) reach them over a socket exactly as they reach the real APIs.

An accept loop on a daemon thread and a daemon thread per connection (handlers may block or
sleep: the fakes' latency switch, ``/_fake/sent?wait_for=``), with a lean parser of its own
(``_Connection``) instead of the stdlib's ``BaseHTTPRequestHandler``, whose header parsing
(``http.client``/``email.parser``), buffered files and per-header writes cost several times
the CPU per request; in the end-to-end bench that CPU competes with the services measured.

* keep-alive (HTTP/1.1; every answer carries its length), as the real APIs;
* ``nodelay``: TCP_NODELAY on every connection (the answer goes out in one ``sendall``, but a
  second answer on a keep-alive connection must not wait for the client's delayed ACK);
* ``backlog``: deep enough for a client opening dozens of connections at once;
* ``stop()`` closes the listener and cuts open keep-alive connections, so no connection
  thread serves after it.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from types import TracebackType
from typing import Self, TypeAlias

__all__ = ["DEFAULT_BACKLOG", "HttpAnswer", "HttpRequest", "LocalHttpServer", "RequestHandler"]

# Deep enough for a load test's burst of connections (the stdlib default is 5).
DEFAULT_BACKLOG = 256


@dataclass(frozen=True)
class HttpRequest:
    """One request as received: ``target`` is the path and query as sent; header names are
    lower-cased (repeated headers joined with ", ")."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class HttpAnswer:
    """What to write back: status, body bytes, content type, extra headers.

    ``drop`` closes the connection without writing anything.
    """

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


RequestHandler: TypeAlias = Callable[[HttpRequest], HttpAnswer]


class LocalHttpServer:
    """Serve ``handle`` on ``host:port`` (port 0: a free one) from ``start()`` to ``stop()``.

    ``handle`` runs on the server's threads, one per connection (so it may block). If it
    raises, the traceback is printed and the client gets a 500 naming the server and the
    exception. Stand-ins subclass this and pass one of their own methods as ``handle``.
    """

    def __init__(
        self,
        handle: RequestHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "local-http-server",
        nodelay: bool = True,
        backlog: int = DEFAULT_BACKLOG,
        verbose: bool = False,
    ) -> None:
        self.handle = handle
        self.host = host
        self.name = name
        self.nodelay = nodelay
        self.backlog = backlog
        self.verbose = verbose
        self._requested_port = port
        self._server: _Listener | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind and serve from a daemon thread; returns self. RuntimeError if already started."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} already started at {self.base_url}")
        server = _Listener((self.host, self._requested_port), self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            name=f"{self.name}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open connections (idempotent)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        if thread is not None:
            thread.join(timeout=5)
        self._server, self._thread = None, None

    def __enter__(self) -> Self:
        return self.start() if self._server is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port; RuntimeError before ``start()``."""
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (no trailing slash); RuntimeError before ``start()``."""
        return f"http://{self.host}:{self.port}"

    def respond(self, request: HttpRequest) -> HttpAnswer:
        """``handle(request)``, or a 500 that names the crash (printed too) if it raised."""
        try:
            return self.handle(request)
        except Exception as exc:  # a bug in the stand-in: make it loud, in the log and answer
            traceback.print_exc()
            body = {"error": {"message": f"{self.name} crashed: {exc!r}", "type": "fake"}}
            return HttpAnswer(500, json.dumps(body).encode("utf-8"))



# Methods the stand-ins answer (as the stdlib handler's do_GET..do_PATCH); others get a 501.
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})
_REASONS = {status.value: status.phrase for status in HTTPStatus}
_MAX_HEAD = 65536 + 100 * 65536  # the stdlib's limits: a 64 KiB request line, 100 header lines
_MAX_LINE = 65537


class _BadRequest(Exception):
    """The request cannot be read: answer ``status`` and close (as the stdlib's send_error)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Listener:
    """The listening socket, its accept loop, and the open connections ``shutdown()`` cuts."""

    def __init__(self, address: tuple[str, int], owner: LocalHttpServer) -> None:
        self.owner = owner
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind(address)
            self._sock.listen(owner.backlog)
        except BaseException:
            self._sock.close()
            raise
        self.server_address: tuple[str, int] = self._sock.getsockname()[:2]
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closing = False

    def serve_forever(self) -> None:
        while True:
            try:
                conn, peer = self._sock.accept()
            except OSError:
                if self._closing:
                    return
                time.sleep(0.01)  # e.g. ECONNABORTED (the client gave up) or EMFILE: go on
                continue
            with self._lock:
                if self._closing:
                    conn.close()
                    return
                self._conns.add(conn)
            threading.Thread(
                target=self._serve_connection, args=(conn, peer), daemon=True
            ).start()

    def shutdown(self) -> None:
        """Stop accepting (new connections are refused) and cut the open ones."""
        with self._lock:
            self._closing = True
            conns = list(self._conns)
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        except OSError:
            pass
        self._sock.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _serve_connection(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        try:
            if self.owner.nodelay:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _Connection(conn, peer, self.owner).serve()
        except OSError:
            pass  # client went away / we cut it: not news
        except Exception:
            traceback.print_exc()
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            conn.close()


class _Connection:
    """One keep-alive connection: read a request, answer it in one write, repeat."""

    def __init__(self, sock: socket.socket, peer: tuple[str, int], owner: LocalHttpServer) -> None:
        self.sock = sock
        self.peer = peer
        self.owner = owner
        self.buf = b""

    def serve(self) -> None:
        while True:
            head = self._read_head()
            if head is None:
                return  # the client closed between requests
            try:
                method, target, version, headers = _parse_head(head)
                keep_alive = _keeps_alive(version, headers.get("connection", ""))
                if method not in _METHODS:
                    raise _BadRequest(501, f"Unsupported method ({method!r})")
                if headers.get("expect", "").lower() == "100-continue" and version != "HTTP/1.0":
                    self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = self._read_body(headers)
            except _BadRequest as bad:
                page = _error_page(bad.status, str(bad))
                close = {"Connection": "close"}
                self._write(bad.status, page, "text/html;charset=utf-8", close, head)
                return
            answer = self.owner.respond(HttpRequest(method, target, headers, body))
            if answer.drop:
                return
            self._write(answer.status, answer.body, answer.content_type, answer.headers, head)
            if not keep_alive:
                return

    def _write(
        self, status: int, body: bytes, content_type: str, extra: dict[str, str], head: bytes
    ) -> None:
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}",
            f"Server: {self.owner.name}",
            f"Date: {_http_date()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        lines.extend(f"{name}: {value}" for name, value in extra.items())
        lines.append("\r\n")
        self.sock.sendall("\r\n".join(lines).encode("latin-1") + body)
        if self.owner.verbose:
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            sys.stderr.write(
                f"{self.peer[0]} - - [{_http_date()}] \"{request_line}\" {status} {len(body)}\n"
            )

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def _read_head(self) -> bytes | None:
        searched = 0
        while True:
            end = self.buf.find(b"\r\n\r\n", searched)
            if end >= 0:
                head, self.buf = self.buf[:end], self.buf[end + 4 :]
                return head
            if len(self.buf) > _MAX_HEAD:
                raise OSError("request head too long")  # as the stdlib: drop the connection
            searched = max(0, len(self.buf) - 3)
            if not self._fill():
                return None

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buf) < size:
            if not self._fill():
                raise OSError("connection closed mid-body")
        data, self.buf = self.buf[:size], self.buf[size:]
        return data

    def _read_line(self) -> bytes:
        while True:
            end = self.buf.find(b"\r\n")
            if end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 2 :]
                return line
            if len(self.buf) > _MAX_LINE:
                raise OSError("chunk line too long")
            if not self._fill():
                raise OSError("connection closed mid-body")

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                try:
                    size = int(self._read_line().split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise OSError("bad chunk size") from exc
                if size == 0:
                    while self._read_line():
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self._read_exactly(size))
                self._read_line()  # CRLF after each chunk
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError as exc:
            raise OSError("bad Content-Length") from exc
        return self._read_exactly(length) if length > 0 else b""


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Request line and headers; names lower-cased, repeated headers joined with ", "."""
    text = head.decode("latin-1")
    request_line, _, rest = text.partition("\r\n")
    words = request_line.split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        raise _BadRequest(400, f"Bad request syntax ({request_line!r})")
    method, target, version = words
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadRequest(505, f"Invalid HTTP version ({version})")
    if target.startswith("//"):  # as the stdlib: not a scheme-relative URL
        target = "/" + target.lstrip("/")
    headers: dict[str, str] = {}
    if rest:
        for line in rest.split("\r\n"):
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest(400, f"Bad header line ({line!r})")
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return method, target, version, headers


def _keeps_alive(version: str, connection: str) -> bool:
    tokens = connection.lower()
    if version == "HTTP/1.1":
        return "close" not in tokens
    return "keep-alive" in tokens


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    """The Date header's value, formatted at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def _error_page(status: int, message: str) -> bytes:
    return (
        f"<!DOCTYPE HTML>\n<html><head><title>Error response</title></head><body>"
        f"<h1>Error response</h1><p>Error code: {status}</p><p>Message: {message}.</p>"
        f"</body></html>\n"
    ).encode("utf-8", "replace")
