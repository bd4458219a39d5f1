"""Shared plumbing for the fake HTTP servers used by the tests and the benchmarks.

Each fake is a real HTTP/1.1 server on 127.0.0.1 (``app.devtools.local_http_server``: keep-alive,
TCP_NODELAY, a deep listen backlog), so the real clients (httpx, the groq SDK, a service started
as a subprocess) talk to it over a socket exactly as they would talk to the real API.

What lives here, shared by every fake:

* lifecycle: ``start()`` binds a free port (port 0) and serves from a daemon thread,
  ``stop()`` shuts the server down and cuts open keep-alive connections; context manager;
* JSON decoding and a thread-safe record of every API request (``recorded()``), with a
  condition variable to wait on (no busy spin);
* behaviour switches (``Switch``), settable from any thread at any time: ``latency_s``,
  ``malformed_json``, a queue of scripted responses consumed one per API request
  (``script()``), a persistent failure (``fail_always()``) and ``clear()`` to return to the
  defaults;
* the ``/_fake/...`` control endpoints (never recorded, never delayed) that let a test drive a
  fake running in another process, and ``serve_standalone()`` for ``python -m`` entry points.

A subclass supplies the API itself: ``precheck()`` (routing, auth, request validation; answered
before a scripted response is consumed), ``success_response()`` and ``error_response()`` (the
API's wire format).
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from types import FrameType
from typing import Any, ClassVar, Generic, Self, TextIO, TypeAlias, TypeVar, cast, overload
from urllib.parse import parse_qs, urlsplit

from app.devtools.local_http_server import (
    DEFAULT_BACKLOG,
    HttpAnswer,
    HttpRequest,
    LocalHttpServer,
)

__all__ = [
    "CONTROL_PREFIX",
    "ControlRoute",
    "MALFORMED_BODY",
    "FakeHttpServer",
    "HttpAnswer",
    "RecordedRequest",
    "ScriptItem",
    "Scripted",
    "Switch",
    "json_response",
    "parse_script_item",
    "serve_command_line",
    "serve_standalone",
    "standalone_parser",
]

CONTROL_PREFIX = "/_fake/"
# A generation's collection threshold no count reaches: no automatic full collection.
NEVER = 2**31 - 1

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


def json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> HttpAnswer:
    """An ``application/json`` answer carrying ``payload``."""
    return HttpAnswer(
        status=status,
        body=json.dumps(payload).encode("utf-8"),
        headers=dict(headers or {}),
    )


ControlRoute: TypeAlias = Callable[[Any, dict[str, list[str]]], HttpAnswer]

T = TypeVar("T")


class Switch(Generic[T]):
    """A behaviour switch of a fake: an attribute read and set from any thread, under its lock.

    Declared on the class (``expected_token = Switch[str | None](None)``); ``convert`` checks
    and normalises each new value (ValueError refuses it). ``cleared`` switches go back to
    ``default`` on ``clear()``; the others are configuration and stay as set.
    """

    def __init__(
        self, default: T, convert: Callable[[Any], T] | None = None, *, cleared: bool = False
    ) -> None:
        self.default = default
        self.convert = convert
        self.cleared = cleared
        self.slot = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_switch_{name}"

    @overload
    def __get__(self, fake: None, owner: type | None = None) -> Self: ...

    @overload
    def __get__(self, fake: FakeHttpServer, owner: type | None = None) -> T: ...

    def __get__(self, fake: FakeHttpServer | None, owner: type | None = None) -> T | Self:
        if fake is None:
            return self
        with fake._lock:
            return cast(T, fake.__dict__.get(self.slot, self.default))

    def __set__(self, fake: FakeHttpServer, value: Any) -> None:
        converted = self.convert(value) if self.convert is not None else value
        with fake._lock:
            fake.__dict__[self.slot] = converted

    def reset(self, fake: FakeHttpServer) -> None:
        with fake._lock:
            fake.__dict__.pop(self.slot, None)


def _switches(fake_class: type) -> list[Switch[Any]]:
    return [
        value
        for klass in fake_class.__mro__
        for value in vars(klass).values()
        if isinstance(value, Switch)
    ]


def _latency(value: Any) -> float:
    seconds = float(value)
    if seconds < 0:
        raise ValueError("latency_s must be >= 0")
    return seconds


class FakeHttpServer(LocalHttpServer):
    """Base class of the fakes: lifecycle, recording, switches and control endpoints.

    Precedence for each API request: ``precheck()`` (routing/auth/validation; does not consume
    the script) -> next scripted response -> ``fail_always`` -> normal success (malformed if the
    ``malformed_json`` switch is on). Latency applies to every API answer; control endpoints
    under ``/_fake/`` are answered at once and not recorded.

    ``nodelay`` and ``backlog`` are ``LocalHttpServer``'s socket options; the defaults suit
    load tests (no delayed-ACK wait per answer, no resets when many clients connect at once).
    """

    name: ClassVar[str] = "fake"
    # Switches POST /_fake/config may set (JSON object of name -> value).
    settable: ClassVar[frozenset[str]] = frozenset({"latency_s", "malformed_json"})

    latency_s = Switch[float](0.0, _latency, cleared=True)
    """Seconds to wait before each API answer (a scripted ``latency_s`` overrides it)."""
    malformed_json = Switch[bool](False, bool, cleared=True)
    """Answer successes with HTTP 200 and a body that is not JSON."""
    collect_on_forget = False
    """``forget`` ends with a full garbage collection (``--no-full-collections``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        verbose: bool = False,
        nodelay: bool = True,
        backlog: int = DEFAULT_BACKLOG,
    ) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._records: list[RecordedRequest] = []
        self._script: deque[Scripted] = deque()
        self._failure: Scripted | None = None
        self._stopping = threading.Event()
        super().__init__(
            self._handle_http,
            host=host,
            port=port,
            name=self.name,
            nodelay=nodelay,
            backlog=backlog,
            verbose=verbose,
        )

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Bind (port 0 = a free port), serve from a daemon thread; returns self."""
        self._stopping.clear()
        return super().start()

    def stop(self) -> None:
        """Stop serving and cut open connections (idempotent). Sleeping answers are abandoned."""
        if not self.running:
            return
        self._stopping.set()
        super().stop()
        with self._changed:
            self._changed.notify_all()

    # ---------------------------------------------------------------- switches

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
            for switch in _switches(type(self)):
                if switch.cleared:
                    switch.reset(self)
            self._clear_extra()

    def forget(self) -> None:
        """Drop the recorded requests (then collect garbage in full when
        ``collect_on_forget``)."""
        with self._lock:
            self._records.clear()
        if self.collect_on_forget:
            gc.collect()

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

    def precheck(self, request: RecordedRequest) -> HttpAnswer | None:
        """Routing, auth, validation: an answer here pre-empts the script (not consumed)."""
        return None

    def success_response(self, request: RecordedRequest) -> HttpAnswer:
        """The API's normal 200 answer to ``request``."""
        raise NotImplementedError

    def error_response(self, request: RecordedRequest, plan: Scripted) -> HttpAnswer:
        """The API's error answer for ``plan`` (its status/code/subcode/message)."""
        raise NotImplementedError

    def requests_view(self) -> Any:
        """JSON served by GET /_fake/requests (subclasses mirror their ``requests()``)."""
        return [r.to_json() for r in self.recorded()]

    def control_routes(self) -> dict[tuple[str, str], ControlRoute]:
        """Extra control endpoints: (METHOD, "/_fake/name") -> fn(json_body, query)."""
        return {}

    # ---------------------------------------------------------------- request handling

    def _handle_http(self, http: HttpRequest) -> HttpAnswer:
        parts = urlsplit(http.target)
        query = parse_qs(parts.query)
        try:
            body = json.loads(http.body) if http.body else None
        except ValueError:
            body = None
        if parts.path.startswith(CONTROL_PREFIX):
            return self._control(http.method, parts.path, body, query)
        return self._api(http.method, parts.path, query, http.headers, body, http.body)

    def _api(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: Any,
        raw_body: bytes,
    ) -> HttpAnswer:
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
                default_latency = self.latency_s
                malformed_default = self.malformed_json
            plan = plan or Scripted()
            latency = plan.latency_s if plan.latency_s is not None else default_latency
            answer = self._answer(request, plan, malformed_default)
        else:
            latency = self.latency_s

        if latency > 0 and self._stopping.wait(latency):
            return HttpAnswer(status=0, body=b"", drop=True)  # stopped while sleeping
        if plan is not None and plan.retry_after is not None:
            answer = replace(
                answer, headers={**answer.headers, "Retry-After": f"{plan.retry_after:g}"}
            )
        self._settle(request, answer)
        return answer

    def _answer(
        self, request: RecordedRequest, plan: Scripted, malformed_default: bool
    ) -> HttpAnswer:
        if plan.drop:
            return HttpAnswer(status=0, body=b"", drop=True)
        if plan.body is not None:
            return HttpAnswer(plan.status, plan.body.encode("utf-8"), "text/plain; charset=utf-8")
        if not plan.is_success:
            return self.error_response(request, plan)
        answer = self.success_response(request)
        malformed = plan.malformed if plan.malformed is not None else malformed_default
        if malformed:
            return replace(answer, body=MALFORMED_BODY)
        return replace(answer, status=plan.status) if plan.status != answer.status else answer

    def _settle(self, request: RecordedRequest, answer: HttpAnswer) -> None:
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
    ) -> HttpAnswer:
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
    def _ok(action: Callable[[], None]) -> HttpAnswer:
        action()
        return json_response(200, {"ok": True})

    @staticmethod
    def _wait_params(query: dict[str, list[str]]) -> tuple[int, float] | None:
        """``?wait_for=N&timeout=S`` on GET views: long-poll until N items exist."""
        if "wait_for" not in query:
            return None
        return int(query["wait_for"][0]), float(query.get("timeout", ["5"])[0])

    def _control_requests(self, _body: Any, query: dict[str, list[str]]) -> HttpAnswer:
        wait = self._wait_params(query)
        if wait is not None:
            self.wait_for_requests(*wait)
        return json_response(200, self.requests_view())

    def _control_script(self, body: Any, _query: dict[str, list[str]]) -> HttpAnswer:
        if not isinstance(body, list):
            raise ValueError("POST /_fake/script wants a JSON list of script items")
        self.script(body)
        return json_response(200, {"ok": True, "pending": self.pending_script()})

    def _control_fail_always(self, body: Any, _query: dict[str, list[str]]) -> HttpAnswer:
        spec = body if isinstance(body, dict) else {}
        self.fail_always(
            int(spec.get("status", 500)),
            spec.get("code"),
            subcode=spec.get("subcode"),
            message=spec.get("message"),
        )
        return json_response(200, {"ok": True})

    def _control_config(self, body: Any, _query: dict[str, list[str]]) -> HttpAnswer:
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
    parser.add_argument("--no-full-collections", action="store_true",
                        help="no automatic full (generation 2) garbage collection; each "
                             "POST /_fake/forget runs one (for benchmarks: the recorded "
                             "requests make each full collection a stop of 20-120 ms)")
    return parser


def serve_command_line(
    fake_class: Callable[..., FakeHttpServer],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
) -> int:
    """A fake's ``python -m`` entry point: parse ``argv`` with ``parser`` (from
    ``standalone_parser``), build the fake, apply ``--latency``, serve; returns 0.

    Options the fake adds to the parser are passed to ``fake_class`` as keywords named by their
    ``dest``, so ``--expected-token`` reaches ``expected_token=``.
    """
    options = vars(parser.parse_args(argv))
    latency = options.pop("latency")
    no_full_collections = options.pop("no_full_collections")
    fake = fake_class(options.pop("host"), options.pop("port"), **options)
    fake.latency_s = latency
    if no_full_collections:
        young, middle, _full = gc.get_threshold()
        gc.set_threshold(young, middle, NEVER)
        fake.collect_on_forget = True
    serve_standalone(fake)
    return 0
