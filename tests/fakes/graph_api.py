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

Errors carry Meta's error object (``FakeGraphApi.error_body``)::

    {"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException",
               "code": 131047, "error_subcode": ..., "error_data": {...}, "fbtrace_id": "..."}}

with codes defaulting per HTTP status: 400 -> 100, 401 -> 190 (expired token), 403 -> 10,
429 -> 130429 (rate limit), 500 -> 1, 503 -> 2. Useful scripted codes: 131047 (24-hour window
closed / re-engagement), 131026 (undeliverable), 131056 (pair rate limit), 131000.

Switches (thread-safe, settable any time): ``latency_s``, ``malformed_json``, ``script()``,
``fail_always()``, ``clear()``, ``expected_token`` (bearer mismatch -> 401 code 190) and
``expected_phone_number_id`` (mismatch -> 400 code 100, subcode 33).

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

import re
import secrets
import sys
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar

from tests.fakes.http_fake import (
    ControlRoute,
    FakeHttpServer,
    FakeResponse,
    RecordedRequest,
    Scripted,
    json_response,
    serve_standalone,
    standalone_parser,
)

__all__ = ["META_ERRORS", "FakeGraphApi", "main"]

_MESSAGES_PATH = re.compile(r"^/(?P<version>v\d+\.\d+)/(?P<phone_number_id>[^/]+)/messages/?$")

# code -> (usual HTTP status, title, error_data.details or None)
META_ERRORS: dict[int, tuple[int, str, str | None]] = {
    1: (500, "An unknown error occurred", None),
    2: (503, "Service temporarily unavailable", None),
    4: (429, "Application request limit reached", None),
    10: (403, "Application does not have permission for this action", None),
    100: (400, "Invalid parameter", None),
    190: (401, "Error validating access token: Session has expired.", None),
    2500: (400, "Unknown path components", None),
    130429: (429, "Rate limit hit", "Cloud API message throughput has been reached."),
    131000: (500, "Something went wrong", None),
    131026: (400, "Message Undeliverable", "Unable to deliver the message."),
    131047: (
        400,
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer "
        "last replied to this number.",
    ),
    131048: (429, "Spam rate limit hit", None),
    131056: (429, "(Business Account, Consumer Account) pair rate limit hit", None),
}

_DEFAULT_CODE_BY_STATUS = {400: 100, 401: 190, 403: 10, 404: 100, 429: 130429, 500: 1, 503: 2}
_DEFAULT_SUBCODES = {190: 463}


def _default_code(status: int) -> int:
    if status in _DEFAULT_CODE_BY_STATUS:
        return _DEFAULT_CODE_BY_STATUS[status]
    return 1 if status >= 500 else 100


class FakeGraphApi(FakeHttpServer):
    """Fake WhatsApp Cloud API (see the module docstring for wire format and switches)."""

    name: ClassVar[str] = "fake-graph-api"
    settable: ClassVar[frozenset[str]] = FakeHttpServer.settable | {
        "expected_token",
        "expected_phone_number_id",
    }

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
        self._expected_token = expected_token
        self._expected_phone_number_id = expected_phone_number_id

    # ---------------------------------------------------------------- switches

    @property
    def expected_token(self) -> str | None:
        """If set, a request whose bearer token differs is answered 401 with code 190."""
        with self._lock:
            return self._expected_token

    @expected_token.setter
    def expected_token(self, value: str | None) -> None:
        with self._lock:
            self._expected_token = value

    @property
    def expected_phone_number_id(self) -> str | None:
        """If set, posting to another phone number id is answered 400 code 100 subcode 33."""
        with self._lock:
            return self._expected_phone_number_id

    @expected_phone_number_id.setter
    def expected_phone_number_id(self, value: str | None) -> None:
        with self._lock:
            self._expected_phone_number_id = value

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
        """Every API request (method, path, headers, body, received_at, status, response)."""
        return self.recorded()

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

    def _control_sent(self, _body: Any, query: dict[str, list[str]]) -> FakeResponse:
        wait = self._wait_params(query)
        if wait is not None:
            self.wait_for_sends(*wait)
        return json_response(200, self.sent())

    # ---------------------------------------------------------------- wire format

    @staticmethod
    def error_body(
        code: int,
        message: str | None = None,
        subcode: int | None = None,
        details: str | None = None,
    ) -> dict[str, Any]:
        """Meta's error object for ``code`` (message/details default from ``META_ERRORS``)."""
        _status, title, default_details = META_ERRORS.get(code, (400, "Error", None))
        if message is None:
            message = title if code == 190 else f"(#{code}) {title}"
        error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
        subcode = subcode if subcode is not None else _DEFAULT_SUBCODES.get(code)
        if subcode is not None:
            error["error_subcode"] = subcode
        details = details if details is not None else default_details
        if details is not None:
            error["error_data"] = {"messaging_product": "whatsapp", "details": details}
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)
        return {"error": error}

    def _meta_error(
        self,
        status: int,
        code: int,
        message: str | None = None,
        subcode: int | None = None,
    ) -> FakeResponse:
        return json_response(
            status,
            self.error_body(code, message, subcode),
            headers={"WWW-Authenticate": 'OAuth "Facebook Platform" "invalid_token"'}
            if status == 401
            else None,
        )

    def error_response(self, request: RecordedRequest, plan: Scripted) -> FakeResponse:
        code = _default_code(plan.status)
        if isinstance(plan.code, int) or (isinstance(plan.code, str) and plan.code.isdigit()):
            code = int(plan.code)
        return self._meta_error(plan.status, code, plan.message, plan.subcode)

    def precheck(self, request: RecordedRequest) -> FakeResponse | None:
        match = _MESSAGES_PATH.match(request.path)
        if match is None:
            return self._meta_error(
                400, 2500, f"Unknown path components: {request.path}", subcode=None
            )
        if request.method != "POST":
            return self._meta_error(400, 100, f"Unsupported {request.method} request.", subcode=33)
        expected = self.expected_token
        if expected is not None:
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or token.strip() != expected:
                return self._meta_error(401, 190)
        wanted_id = self.expected_phone_number_id
        if wanted_id is not None and match["phone_number_id"] != wanted_id:
            return self._meta_error(
                400,
                100,
                f"Unsupported post request. Object with ID '{match['phone_number_id']}' does "
                "not exist, cannot be loaded due to missing permissions, or does not support "
                "this operation.",
                subcode=33,
            )
        problem = _validate_message(request.body)
        if problem is not None:
            return self._meta_error(400, 100, f"(#100) {problem}")
        return None

    def success_response(self, request: RecordedRequest) -> FakeResponse:
        to = request.body.get("to")
        # Meta answers a BSUID send with the BSUID as input and user_id (no wa_id).
        contact = ({"input": str(to), "wa_id": re.sub(r"\D", "", str(to))} if to
                   else {"input": request.body["recipient"], "user_id": request.body["recipient"]})
        return json_response(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [contact],
                "messages": [{"id": f"wamid.FAKE{uuid.uuid4().hex.upper()}"}],
            },
        )


def _is_confirmed(record: RecordedRequest) -> bool:
    return record.status == 200


def _validate_message(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if body.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required and must be 'whatsapp'."
    # ``to`` (a phone) or ``recipient`` (a business-scoped user id); with both, ``to`` wins.
    addresses = [body.get(k) for k in ("to", "recipient") if body.get(k) is not None]
    if not addresses or not all(isinstance(a, str) and a.strip() for a in addresses):
        return "The parameter to or recipient is required."
    kind = body.get("type", "text")
    if kind == "text":
        text = body.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"]:
            return "The parameter text['body'] is required."
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = standalone_parser("Fake WhatsApp Cloud (Graph) API")
    parser.add_argument("--expected-token", default=None, help="bearer token to insist on")
    parser.add_argument("--phone-number-id", default=None, help="only accept this sender id")
    args = parser.parse_args(argv)
    fake = FakeGraphApi(
        args.host,
        args.port,
        expected_token=args.expected_token,
        expected_phone_number_id=args.phone_number_id,
        verbose=args.verbose,
    )
    fake.latency_s = args.latency
    serve_standalone(fake)
    return 0


if __name__ == "__main__":
    sys.exit(main())
