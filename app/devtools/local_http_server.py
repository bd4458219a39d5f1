"""A real HTTP/1.1 server on a local port that answers every request through one function.

The Graph API stand-in of ``mecove simulate`` (``app.devtools.simulated_graph_api``) and the
test suite's fakes (``tests/fakes``) are built on it, so real clients (httpx, the groq SDK, a
service in another process) reach them over a socket exactly as they reach the real APIs.

Stdlib ``ThreadingHTTPServer`` serving from a daemon thread, with what a fast local stand-in
needs and the stdlib does not give by default:

* keep-alive (HTTP/1.1; every answer carries its length), as the real APIs;
* ``nodelay``: headers and body go out in two writes, and with Nagle's algorithm on the body
  waits for the client's delayed ACK (~40 ms per answer on Linux);
* ``backlog``: the stdlib listens with a backlog of 5, so a client opening dozens of
  connections at once gets resets;
* ``stop()`` cuts open keep-alive connections, so no handler thread serves after it.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, TypeAlias

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

    ``handle`` runs on the server's threads, one per connection. If it raises, the traceback is
    printed and the client gets a 500 naming the server and the exception. Stand-ins subclass
    this and pass one of their own methods as ``handle``.
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
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind and serve from a daemon thread; returns self. RuntimeError if already started."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} already started at {self.base_url}")
        server = _Server((self.host, self._requested_port), self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
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
        server.cut_connections()
        server.server_close()
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: LocalHttpServer) -> None:
        self.owner = owner
        self.request_queue_size = owner.backlog  # read by server_activate's listen()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):  # client went away / we cut it: not news
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        self.disable_nagle_algorithm = self.server.owner.nodelay  # read by setup() below
        super().setup()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.verbose:
            super().log_message(format, *args)

    def _dispatch(self) -> None:
        try:
            raw = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        answer = self.server.owner.respond(
            HttpRequest(self.command, self.path, self._lowered_headers(), raw)
        )
        if answer.drop:
            self.close_connection = True
            return
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)
        self.wfile.flush()

    def _lowered_headers(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        return merged

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)  # CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""
