"""Fake Meta WhatsApp Cloud (Graph) API: ``POST /{version}/{phone_number_id}/messages``.

A real HTTP server on 127.0.0.1 answering in Meta's wire format, for integration tests::

    with FakeGraphApi() as graph:                      # or FakeGraphApi().start() ... .stop()
        settings.whatsapp_api_base_url = graph.base_url  # http://127.0.0.1:PORT
        graph.script([429, ("error", 400, 131047), 200])  # one answer per request, then normal
        ...
        sends = graph.wait_for_sends(1, timeout=5)     # bodies of the 200-answered sends

Success (HTTP 200)::

    {"messaging_product": "whatsapp",
     "contacts": [{"input": "<to>", "wa_id": "<to, digits only>"}],
     "messages": [{"id": "wamid.<unique>"}]}

Errors carry Meta's error object (``app.devtools.graph_wire.error_body``, the wire format this
fake shares with the simulated Graph API of ``mecove simulate``)::

    {"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException",
               "code": 131047, "error_subcode": ..., "error_data": {...}, "fbtrace_id": "..."}}

with codes defaulting per HTTP status: 400 -> 100, 401 -> 190 (expired token), 403 -> 10,
429 -> 130429 (rate limit), 500 -> 1, 503 -> 2. Useful scripted codes: 131047 (24-hour window
closed / re-engagement), 131026 (undeliverable), 131056 (pair rate limit), 131000.

Switches (thread-safe, settable any time): ``latency_s``, ``malformed_json``, ``script()``,
``fail_always()``, ``clear()``, ``expected_token`` (bearer mismatch -> 401 code 190) and
``expected_phone_number_id`` (mismatch -> 400 code 100, subcode 33). A new switch is one
``Switch`` line on the class and a check in ``precheck()`` (add it to ``settable`` to let
``POST /_fake/config`` set it).

Rate limits and typing indicators (switches for reply pacing)::

    graph.pair_limit = (3, 6.0)         # per recipient: a 4th message within 6 s -> 429 131056
    graph.throughput_limit = (5, 1.0)   # whole number: a 6th message within 1 s -> 429 130429
    graph.typing_status = 500           # answer read / typing-indicator calls with this status
    graph.read_marks()                  # bodies of the read / typing calls, kept apart
    graph.answer_late(2.0)              # the next message is accepted, answered 2 s later
    graph.drop_after_reading()          # the next message is read, then the connection cut

Limits count the messages let through (before any scripted answer) and are checked before the
script, like validation. Read / typing-indicator calls (``"status": "read"``) never consume
the script, never count as sends and are left out of ``requests()``, ``sent()`` and limits.

Request validation mirrors Meta's: the body must be a JSON object with
``messaging_product == "whatsapp"`` and a ``to`` (phone) or ``recipient`` (BSUID); a ``text``
message needs ``text.body``.
Validation and auth failures are answered before a scripted response is consumed.

"Confirmed sends" are requests answered HTTP 200 - including a 200 whose body was malformed
(the message "went out"; the client just could not read the reply, which is the duplicate-send
hazard such a test is after). Dropped connections and errors are never confirmed.

Standalone: ``python -m tests.fakes.graph_api --port 0`` prints ``listening http://127.0.0.1:PORT``
and serves until SIGTERM/SIGINT. Control endpoints: ``GET /_fake/sent`` (confirmed send bodies;
``?wait_for=N&timeout=S`` long-polls), ``GET /_fake/requests`` (every request, full record),
``POST /_fake/script`` (JSON list, e.g. ``[429, ["error", 400, 131047], 200]``),
``POST /_fake/fail_always`` (``{"status": 500, "code": 2}``), ``POST /_fake/config``
(``{"latency_s": 0.5, "expected_token": "t"}``), ``POST /_fake/clear|forget|reset``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any, ClassVar

from app.devtools.graph_wire import (
    MESSAGES_PATH,
    META_ERRORS,
    accepted_answer,
    default_error_code,
    error_answer,
    is_read_mark,
    new_outbound_wamid,
    read_mark_answer,
    refuse_request,
    refuse_send,
)
from app.devtools.local_http_server import HttpAnswer
from tests.fakes.http_fake import (
    ControlRoute,
    FakeHttpServer,
    RecordedRequest,
    Scripted,
    Switch,
    json_response,
    serve_command_line,
    standalone_parser,
)

__all__ = ["FakeGraphApi", "main"]


class FakeGraphApi(FakeHttpServer):
    """Fake WhatsApp Cloud API (see the module docstring for wire format and switches)."""

    name: ClassVar[str] = "fake-graph-api"
    settable: ClassVar[frozenset[str]] = FakeHttpServer.settable | {
        "expected_token",
        "expected_phone_number_id",
    }

    expected_token = Switch[str | None](None)
    """If set, a request whose bearer token differs is answered 401 with code 190."""
    expected_phone_number_id = Switch[str | None](None)
    """If set, posting to another phone number id is answered 400 code 100 subcode 33."""
    pair_limit = Switch[tuple[int, float] | None](None, cleared=True)
    """(N, seconds): a message to a recipient that had N let through in the last seconds is
    answered 429 code 131056 (Meta's pair rate limit)."""
    throughput_limit = Switch[tuple[int, float] | None](None, cleared=True)
    """(N, seconds): a message when N were let through in the last seconds, to anyone, is
    answered 429 code 130429 (Meta's throughput limit)."""
    typing_status = Switch[int](200, cleared=True)
    """The HTTP status read / typing-indicator calls are answered with."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        expected_token: str | None = None,
        expected_phone_number_id: str | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__(host, port, verbose=verbose)
        self.expected_token = expected_token
        self.expected_phone_number_id = expected_phone_number_id
        self._limits_lock = threading.Lock()
        self._let_through: dict[str, deque[float]] = defaultdict(deque)
        self._let_through_all: deque[float] = deque()

    def _clear_extra(self) -> None:
        with self._limits_lock:
            self._let_through.clear()
            self._let_through_all.clear()

    def answer_late(self, seconds: float, count: int = 1) -> None:
        """The next ``count`` messages are accepted (HTTP 200) but answered ``seconds`` late."""
        self.script([Scripted(latency_s=seconds)] * count)

    def drop_after_reading(self, count: int = 1) -> None:
        """The next ``count`` messages are read whole, then the connection is cut unanswered."""
        self.script(["drop"] * count)

    @staticmethod
    def error(
        code: int,
        status: int | None = None,
        *,
        subcode: int | None = None,
        message: str | None = None,
    ) -> Scripted:
        """A script item answering with Meta error ``code`` (status defaults per code)."""
        return Scripted(
            status=status if status is not None else META_ERRORS.get(code, (400, "", None))[0],
            code=code,
            subcode=subcode,
            message=message,
        )

    # ---------------------------------------------------------------- views

    def requests(self) -> list[RecordedRequest]:
        """Every message request (method, path, headers, body, received_at, status,
        response); read / typing-indicator calls are in ``read_requests()``."""
        return [r for r in self.recorded() if not is_read_mark(r.body)]

    def read_requests(self) -> list[RecordedRequest]:
        """Every read / typing-indicator call, however it was answered."""
        return [r for r in self.recorded() if is_read_mark(r.body)]

    def read_marks(self) -> list[Any]:
        """JSON bodies of the read / typing-indicator calls answered HTTP 200."""
        return [r.body for r in self.read_requests() if r.status == 200]

    def confirmed(self) -> list[RecordedRequest]:
        """Records of the sends answered HTTP 200 (``.response`` holds the wamid, if readable)."""
        return [r for r in self.recorded() if _is_confirmed(r)]

    def sent(self) -> list[Any]:
        """JSON bodies of the confirmed (200-answered) sends, in arrival order."""
        return [r.body for r in self.confirmed()]

    def sent_texts(self) -> list[str]:
        """``text.body`` of each confirmed text send."""
        return [
            b["text"]["body"]
            for b in self.sent()
            if isinstance(b, dict) and isinstance(b.get("text"), dict) and "body" in b["text"]
        ]

    def wait_for_sends(self, n: int, timeout: float = 5.0) -> list[Any]:
        """Block (condition variable, no spinning) until >= n confirmed sends; return them all.

        TimeoutError names what arrived instead, e.g. a run of 429s.
        """
        self._wait_until(
            lambda: sum(_is_confirmed(r) for r in self._records) >= n,
            timeout,
            lambda: f"{n} confirmed send(s) (have {sum(map(_is_confirmed, self._records))})",
        )
        return self.sent()

    def control_routes(self) -> dict[tuple[str, str], ControlRoute]:
        return {("GET", "/_fake/sent"): self._control_sent}

    def _control_sent(self, _body: Any, query: dict[str, list[str]]) -> HttpAnswer:
        wait = self._wait_params(query)
        if wait is not None:
            self.wait_for_sends(*wait)
        return json_response(200, self.sent())

    # ---------------------------------------------------------------- wire format

    def error_response(self, request: RecordedRequest, plan: Scripted) -> HttpAnswer:
        code = default_error_code(plan.status)
        if isinstance(plan.code, int) or (isinstance(plan.code, str) and plan.code.isdigit()):
            code = int(plan.code)
        return error_answer(plan.status, code, plan.message, plan.subcode)

    def precheck(self, request: RecordedRequest) -> HttpAnswer | None:
        refusal = refuse_request(request.method, request.path)
        if refusal is not None:
            return refusal
        expected = self.expected_token
        if expected is not None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or token.strip() != expected:
                return error_answer(401, 190)
        wanted_id = self.expected_phone_number_id
        match = MESSAGES_PATH.match(request.path)
        if wanted_id is not None and match is not None and match["phone_number_id"] != wanted_id:
            return error_answer(
                400,
                100,
                f"Unsupported post request. Object with ID '{match['phone_number_id']}' does "
                "not exist, cannot be loaded due to missing permissions, or does not support "
                "this operation.",
                subcode=33,
            )
        if is_read_mark(request.body):
            return self._read_answer(request.body)
        return refuse_send(request.body) or self._over_limit(request.body)

    def _read_answer(self, body: dict[str, Any]) -> HttpAnswer:
        status = self.typing_status
        if status != 200 and body.get("message_id"):
            return error_answer(status, default_error_code(status))
        return read_mark_answer(body)

    def _over_limit(self, body: dict[str, Any]) -> HttpAnswer | None:
        """131056 / 130429 when a limit is reached; else count the message as let through."""
        recipient = str(body.get("to") or body.get("recipient"))
        pair, throughput = self.pair_limit, self.throughput_limit
        now = time.monotonic()
        with self._limits_lock:
            sent_to = self._let_through[recipient]
            if pair is not None and _count_within(sent_to, now, pair[1]) >= pair[0]:
                return error_answer(429, 131056)
            if throughput is not None and \
                    _count_within(self._let_through_all, now, throughput[1]) >= throughput[0]:
                return error_answer(429, 130429)
            sent_to.append(now)
            self._let_through_all.append(now)
        return None

    def success_response(self, request: RecordedRequest) -> HttpAnswer:
        return accepted_answer(request.body, new_outbound_wamid())


def _is_confirmed(record: RecordedRequest) -> bool:
    return record.status == 200 and not is_read_mark(record.body)



def _count_within(times: deque[float], now: float, window_s: float) -> int:
    """How many of ``times`` fall in the last ``window_s``; older ones are dropped."""
    while times and times[0] <= now - window_s:
        times.popleft()
    return len(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = standalone_parser("Fake WhatsApp Cloud (Graph) API")
    parser.add_argument("--expected-token", default=None, help="bearer token to insist on")
    parser.add_argument("--phone-number-id", dest="expected_phone_number_id", default=None,
                        help="only accept this sender id")
    return serve_command_line(FakeGraphApi, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
