"""Shared plumbing for the fake HTTP servers used by integration tests.

Each fake is a real HTTP/1.1 server on 127.0.0.1 (stdlib ``ThreadingHTTPServer`` in a daemon
thread), so the real clients (httpx, the groq SDK, a service started as a subprocess) talk to it
over a socket exactly as they would talk to the real API.

What lives here, shared by every fake:

* lifecycle: ``start()`` binds a free port (port 0) and serves from a daemon thread,
  ``stop()`` shuts the server down and cuts open keep-alive connections; context manager;
* request parsing (Content-Length or chunked bodies, JSON decoding) and a thread-safe record of
  every API request (``recorded()``), with a condition variable to wait on (no busy spin);
* behaviour switches, settable from any thread at any time: ``latency_s``, ``malformed_json``,
  a queue of scripted responses consumed one per API request (``script()``), a persistent
  failure (``fail_always()``) and ``clear()`` to return to the defaults;
* the ``/_fake/...`` control endpoints (never recorded, never delayed) that let a test drive a
  fake running in another process, and ``serve_standalone()`` for ``python -m`` entry points.

A subclass supplies the API itself: ``precheck()`` (routing, auth, request validation; answered
before a scripted response is consumed), ``success_response()`` and ``error_response()`` (the
API's wire format).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, ClassVar, Self, TextIO, TypeAlias
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "CONTROL_PREFIX",
    "MALFORMED_BODY",
    "FakeHttpServer",
    "FakeResponse",
    "RecordedRequest",
    "ScriptItem",
    "Scripted",
    "json_response",
    "parse_script_item",
    "serve_standalone",
    "standalone_parser",
]

CONTROL_PREFIX = "/_fake/"

# Answered with HTTP 200 when a fake is told to send a malformed body: readable in a log,
# guaranteed not to parse as JSON.
MALFORMED_BODY = b'{"fake": "deliberately malformed JSON body" <-- not JSON'


@dataclass(frozen=True)
class Scripted:
    """How to answer one API request (or every request, for ``fail_always``).

    ``status`` 2xx with no ``code`` means the API's normal success reply; anything else is
    answered with the API's error body (``code``/``subcode``/``message`` default per status).
    ``malformed`` None means "follow the fake's ``malformed_json`` switch". ``body`` sends these
    exact bytes instead (text/plain). ``drop`` closes the connection without any response.
    ``latency_s`` overrides the fake's ``latency_s`` for this answer. ``retry_after`` adds a
    ``Retry-After`` header (seconds).
    """

    status: int = 200
    code: int | str | None = None
    subcode: int | None = None
    message: str | None = None
    malformed: bool | None = None
    body: str | None = None
    drop: bool = False
    latency_s: float | None = None
    retry_after: float | None = None

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300 and self.code is None and self.body is None


# What ``script()`` accepts per response:
#   200 / 429 / 500 ...                  status only (error body defaults for that status)
#   "ok" | "malformed" | "drop"          success / 200 with a non-JSON body / cut the connection
#   ("error", status, code)              error body with that API error code
#   ("error", status, code, subcode)     ... and that subcode (int) or message (str)
#   ("raw", status, "text")              exactly that body, text/plain
#   {"status": .., "code": .., ...}      any ``Scripted`` field by name (JSON-friendly form)
#   Scripted(...)                        as is
# Lists are accepted wherever tuples are, so the JSON body of POST /_fake/script can use them.
ScriptItem: TypeAlias = int | str | tuple[Any, ...] | list[Any] | Mapping[str, Any] | Scripted

_SCRIPTED_FIELDS = frozenset(Scripted.__dataclass_fields__)


def parse_script_item(item: ScriptItem) -> Scripted:
    """Normalise one ``script()`` entry into a ``Scripted``; ValueError if it makes no sense."""
    if isinstance(item, Scripted):
        return item
    if isinstance(item, bool):  # bool is an int: refuse rather than answer "HTTP 1"
        raise ValueError(f"not a script item: {item!r}")
    if isinstance(item, int):
        return Scripted(status=_status(item))
    if isinstance(item, str):
        keyword = item.strip().lower()
        if keyword in ("ok", "success"):
            return Scripted()
        if keyword == "malformed":
            return Scripted(malformed=True)
        if keyword == "drop":
            return Scripted(drop=True)
        raise ValueError(f"unknown script keyword {item!r} (use 'ok', 'malformed' or 'drop')")
    if isinstance(item, tuple | list):
        return _parse_sequence(list(item))
    if isinstance(item, Mapping):
        unknown = set(item) - _SCRIPTED_FIELDS
        if unknown:
            raise ValueError(
                f"unknown script fields {sorted(unknown)}; known: {sorted(_SCRIPTED_FIELDS)}"
            )
        scripted = Scripted(**dict(item))
        _status(scripted.status)
        return scripted
    raise ValueError(f"not a script item: {item!r}")


def _parse_sequence(parts: list[Any]) -> Scripted:
    if not parts or not isinstance(parts[0], str):
        raise ValueError(f"a script tuple starts with 'error' or 'raw', got {parts!r}")
    kind = parts[0].lower()
    if kind == "error" and len(parts) in (3, 4):
        extra = parts[3] if len(parts) == 4 else None
        return Scripted(
            status=_status(parts[1]),
            code=parts[2],
            subcode=extra if isinstance(extra, int) else None,
            message=extra if isinstance(extra, str) else None,
        )
    if kind == "raw" and len(parts) == 3:
        return Scripted(status=_status(parts[1]), body=str(parts[2]))
    raise ValueError(
        f"bad script tuple {parts!r}: use ('error', status, code[, subcode|message]) "
        "or ('raw', status, text)"
    )


def _status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise ValueError(f"not an HTTP status: {value!r}")
    return value


@dataclass(frozen=True)
class RecordedRequest:
    """One API request as the fake saw it, plus how it was answered.

    ``headers`` keys are lower-cased. ``body`` is the parsed JSON (None if the body was empty or
    not JSON; ``raw_body`` has the bytes). ``status`` is None until the answer is written, and
    stays None if the connection was dropped. ``response`` is the parsed JSON answer (None for
    malformed/raw answers). Times are ``time.time()`` values.
    """

    seq: int
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw_body: bytes
    received_at: float
    status: int | None = None
    response: Any = None
    answered_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["raw_body"] = self.raw_body.decode("utf-8", errors="replace")
        return data


@dataclass(frozen=True)
class FakeResponse:
    """An answer to write: status, body bytes, content type, extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


def json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> FakeResponse:
    return FakeResponse(
        status=status,
        body=json.dumps(payload).encode("utf-8"),
        headers=dict(headers or {}),
    )


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # many clients connect at once in load tests
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], fake: FakeHttpServer) -> None:
        self.fake = fake
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
        """Close keep-alive connections so no handler thread serves after ``stop()``."""
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
    disable_nagle_algorithm = True  # headers and body go out separately: no delayed-ACK wait
    protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs; every answer has a length
    server: _Server

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
        if self.server.fake.verbose:
            super().log_message(format, *args)

    def _dispatch(self) -> None:
        try:
            raw = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        answer = self.server.fake._handle_http(
            method=self.command,
            target=self.path,
            headers={k.lower(): v for k, v in self._header_items()},
            raw_body=raw,
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

    def _header_items(self) -> list[tuple[str, str]]:
        merged: dict[str, str] = {}
        for name, value in self.headers.items():
            merged[name] = f"{merged[name]}, {value}" if name in merged else value
        return list(merged.items())

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


ControlRoute: TypeAlias = Callable[[Any, dict[str, list[str]]], FakeResponse]


class FakeHttpServer:
    """Base class of the fakes: lifecycle, recording, switches and control endpoints.

    Precedence for each API request: ``precheck()`` (routing/auth/validation; does not consume
    the script) -> next scripted response -> ``fail_always`` -> normal success (malformed if the
    ``malformed_json`` switch is on). Latency applies to every API answer; control endpoints
    under ``/_fake/`` are answered at once and not recorded.
    """

    name: ClassVar[str] = "fake"
    # Switches POST /_fake/config may set (JSON object of name -> value).
    settable: ClassVar[frozenset[str]] = frozenset({"latency_s", "malformed_json"})

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False) -> None:
        self.host = host
        self.verbose = verbose
        self._requested_port = port
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._records: list[RecordedRequest] = []
        self._script: deque[Scripted] = deque()
        self._failure: Scripted | None = None
        self._latency_s = 0.0
        self._malformed_json = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Bind (port 0 = a free port), serve from a daemon thread; returns self."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} already started at {self.base_url}")
        self._stopping.clear()
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
        """Stop serving and cut open connections (idempotent). Sleeping answers are abandoned."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.cut_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server, self._thread = None, None
        with self._changed:
            self._changed.notify_all()

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
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash); RuntimeError before ``start()``."""
        return f"http://{self.host}:{self.port}"

    # ---------------------------------------------------------------- switches

    @property
    def latency_s(self) -> float:
        with self._lock:
            return self._latency_s

    @latency_s.setter
    def latency_s(self, value: float) -> None:
        if value < 0:
            raise ValueError("latency_s must be >= 0")
        with self._lock:
            self._latency_s = float(value)

    @property
    def malformed_json(self) -> bool:
        with self._lock:
            return self._malformed_json

    @malformed_json.setter
    def malformed_json(self, value: bool) -> None:
        with self._lock:
            self._malformed_json = bool(value)

    def script(self, items: Iterable[ScriptItem]) -> None:
        """Append responses to the queue; each API request consumes one (see ``ScriptItem``)."""
        parsed = [parse_script_item(item) for item in items]
        with self._lock:
            self._script.extend(parsed)

    def pending_script(self) -> int:
        """How many scripted responses are still queued."""
        with self._lock:
            return len(self._script)

    def fail_always(
        self,
        status: int = 500,
        code: int | str | None = None,
        *,
        subcode: int | None = None,
        message: str | None = None,
    ) -> None:
        """Answer every API request (after the script runs out) with this error until clear()."""
        failure = Scripted(status=_status(status), code=code, subcode=subcode, message=message)
        if failure.is_success:
            raise ValueError("fail_always needs an error status (or a code)")
        with self._lock:
            self._failure = failure

    def clear(self) -> None:
        """Back to default behaviour: empty script, no failure, no latency, well-formed JSON.

        Recorded requests are kept; ``forget()`` drops them, ``reset()`` does both.
        """
        with self._lock:
            self._script.clear()
            self._failure = None
            self._latency_s = 0.0
            self._malformed_json = False
            self._clear_extra()

    def forget(self) -> None:
        """Drop the recorded requests."""
        with self._lock:
            self._records.clear()

    def reset(self) -> None:
        self.clear()
        self.forget()

    def _clear_extra(self) -> None:
        """Subclass hook: reset its own switches (called under the lock)."""

    # ---------------------------------------------------------------- records

    def recorded(self) -> list[RecordedRequest]:
        """Every API request so far (snapshots), in arrival order."""
        with self._lock:
            return list(self._records)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``n`` API requests have been *answered*; TimeoutError if not."""
        self._wait_until(
            lambda: sum(r.status is not None for r in self._records) >= n,
            timeout,
            lambda: f"{n} answered request(s)",
        )
        return self.recorded()

    def _wait_until(
        self, predicate: Callable[[], bool], timeout: float, wanted: Callable[[], str]
    ) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self.name}: waited {timeout:g}s for {wanted()}; have "
                        f"{len(self._records)} request(s) recorded: {self._summary()}"
                    )
                self._changed.wait(remaining)

    def _summary(self) -> str:
        tail = self._records[-5:]
        shown = ", ".join(f"{r.method} {r.path} -> {r.status}" for r in tail)
        more = "... " if len(self._records) > len(tail) else ""
        return f"[{more}{shown}]"

    # ---------------------------------------------------------------- subclass hooks

    def precheck(self, request: RecordedRequest) -> FakeResponse | None:
        """Routing, auth, validation: an answer here pre-empts the script (not consumed)."""
        return None

    def success_response(self, request: RecordedRequest) -> FakeResponse:
        """The API's normal 200 answer to ``request``."""
        raise NotImplementedError

    def error_response(self, request: RecordedRequest, plan: Scripted) -> FakeResponse:
        """The API's error answer for ``plan`` (its status/code/subcode/message)."""
        raise NotImplementedError

    def requests_view(self) -> Any:
        """JSON served by GET /_fake/requests (subclasses mirror their ``requests()``)."""
        return [r.to_json() for r in self.recorded()]

    def control_routes(self) -> dict[tuple[str, str], ControlRoute]:
        """Extra control endpoints: (METHOD, "/_fake/name") -> fn(json_body, query)."""
        return {}

    # ---------------------------------------------------------------- request handling

    def _handle_http(
        self, method: str, target: str, headers: dict[str, str], raw_body: bytes
    ) -> FakeResponse:
        parts = urlsplit(target)
        query = parse_qs(parts.query)
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = None
        try:
            if parts.path.startswith(CONTROL_PREFIX):
                return self._control(method, parts.path, body, query)
            return self._api(method, parts.path, query, headers, body, raw_body)
        except Exception as exc:  # a bug in the fake: make it loud, in the log and the answer
            traceback.print_exc()
            return json_response(
                500, {"error": {"message": f"{self.name} crashed: {exc!r}", "type": "fake"}}
            )

    def _api(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
        raw_body: bytes,
    ) -> FakeResponse:
        with self._changed:
            request = RecordedRequest(
                seq=len(self._records),
                method=method,
                path=path,
                query=query,
                headers=headers,
                body=body,
                raw_body=raw_body,
                received_at=time.time(),
            )
            self._records.append(request)
            self._changed.notify_all()

        answer = self.precheck(request)
        plan: Scripted | None = None
        if answer is None:
            with self._lock:
                plan = self._script.popleft() if self._script else self._failure
                default_latency = self._latency_s
                malformed_default = self._malformed_json
            plan = plan or Scripted()
            latency = plan.latency_s if plan.latency_s is not None else default_latency
            answer = self._answer(request, plan, malformed_default)
        else:
            with self._lock:
                latency = self._latency_s

        if latency > 0 and self._stopping.wait(latency):
            return FakeResponse(status=0, body=b"", drop=True)  # stopped while sleeping
        if plan is not None and plan.retry_after is not None:
            answer = replace(
                answer, headers={**answer.headers, "Retry-After": f"{plan.retry_after:g}"}
            )
        self._settle(request, answer)
        return answer

    def _answer(
        self, request: RecordedRequest, plan: Scripted, malformed_default: bool
    ) -> FakeResponse:
        if plan.drop:
            return FakeResponse(status=0, body=b"", drop=True)
        if plan.body is not None:
            return FakeResponse(plan.status, plan.body.encode("utf-8"), "text/plain; charset=utf-8")
        if not plan.is_success:
            return self.error_response(request, plan)
        answer = self.success_response(request)
        malformed = plan.malformed if plan.malformed is not None else malformed_default
        if malformed:
            return replace(answer, body=MALFORMED_BODY)
        return replace(answer, status=plan.status) if plan.status != answer.status else answer

    def _settle(self, request: RecordedRequest, answer: FakeResponse) -> None:
        """Record the answer before it is written, so a client never sees it first."""
        parsed: Any = None
        if not answer.drop and answer.content_type.startswith("application/json"):
            try:
                parsed = json.loads(answer.body)
            except ValueError:
                parsed = None
        settled = replace(
            request,
            status=None if answer.drop else answer.status,
            response=parsed,
            answered_at=time.time(),
        )
        with self._changed:
            self._records[request.seq] = settled
            self._changed.notify_all()

    # ---------------------------------------------------------------- control endpoints

    def _control(
        self, method: str, path: str, body: Any, query: dict[str, list[str]]
    ) -> FakeResponse:
        routes: dict[tuple[str, str], ControlRoute] = {
            ("GET", "/_fake/health"): lambda _b, _q: json_response(200, {"ok": True}),
            ("GET", "/_fake/requests"): self._control_requests,
            ("GET", "/_fake/records"): lambda _b, _q: json_response(
                200, [r.to_json() for r in self.recorded()]
            ),
            ("POST", "/_fake/script"): self._control_script,
            ("POST", "/_fake/fail_always"): self._control_fail_always,
            ("POST", "/_fake/config"): self._control_config,
            ("POST", "/_fake/clear"): lambda _b, _q: self._ok(self.clear),
            ("POST", "/_fake/forget"): lambda _b, _q: self._ok(self.forget),
            ("POST", "/_fake/reset"): lambda _b, _q: self._ok(self.reset),
        }
        routes.update(self.control_routes())
        route = routes.get((method, path.rstrip("/")))
        if route is None:
            known = sorted(f"{m} {p}" for m, p in routes)
            return json_response(
                404, {"error": f"no control endpoint {method} {path}", "known": known}
            )
        try:
            return route(body, query)
        except (ValueError, TypeError) as exc:
            return json_response(400, {"error": str(exc)})
        except TimeoutError as exc:
            return json_response(408, {"error": str(exc)})

    @staticmethod
    def _ok(action: Callable[[], None]) -> FakeResponse:
        action()
        return json_response(200, {"ok": True})

    @staticmethod
    def _wait_params(query: dict[str, list[str]]) -> tuple[int, float] | None:
        """``?wait_for=N&timeout=S`` on GET views: long-poll until N items exist."""
        if "wait_for" not in query:
            return None
        return int(query["wait_for"][0]), float(query.get("timeout", ["5"])[0])

    def _control_requests(self, _body: Any, query: dict[str, list[str]]) -> FakeResponse:
        wait = self._wait_params(query)
        if wait is not None:
            self.wait_for_requests(*wait)
        return json_response(200, self.requests_view())

    def _control_script(self, body: Any, _query: dict[str, list[str]]) -> FakeResponse:
        if not isinstance(body, list):
            raise ValueError("POST /_fake/script wants a JSON list of script items")
        self.script(body)
        return json_response(200, {"ok": True, "pending": self.pending_script()})

    def _control_fail_always(self, body: Any, _query: dict[str, list[str]]) -> FakeResponse:
        spec = body if isinstance(body, dict) else {}
        self.fail_always(
            int(spec.get("status", 500)),
            spec.get("code"),
            subcode=spec.get("subcode"),
            message=spec.get("message"),
        )
        return json_response(200, {"ok": True})

    def _control_config(self, body: Any, _query: dict[str, list[str]]) -> FakeResponse:
        if not isinstance(body, dict):
            raise ValueError("POST /_fake/config wants a JSON object of switch -> value")
        unknown = set(body) - self.settable
        if unknown:
            raise ValueError(f"unknown switches {sorted(unknown)}; known: {sorted(self.settable)}")
        for key, value in body.items():
            setattr(self, key, value)
        return json_response(200, {"ok": True})


def serve_standalone(
    fake: FakeHttpServer, *, out: TextIO | None = None, ready: Callable[[str], None] | None = None
) -> None:
    """Start ``fake``, print ``listening http://HOST:PORT`` (flushed); serve until SIGTERM/INT."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        fake.start()
        line = f"listening {fake.base_url}"
        stream = out if out is not None else sys.stdout
        print(line, file=stream, flush=True)
        if ready is not None:
            ready(fake.base_url)
        while not stop.wait(0.5):
            pass
    finally:
        fake.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def standalone_parser(description: str) -> argparse.ArgumentParser:
    """The options every fake's ``python -m`` entry point shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port (default)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    return parser
