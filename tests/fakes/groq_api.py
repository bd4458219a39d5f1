"""Fake Groq (OpenAI-compatible) chat completions: ``POST /openai/v1/chat/completions``.

A real HTTP server on 127.0.0.1; point the official SDK at it::

    with FakeGroqApi(reply_text="Namaste!") as groq_fake:
        client = groq.AsyncGroq(api_key="test", base_url=groq_fake.base_url, max_retries=0)
        completion = await client.chat.completions.create(model="m", messages=[...])
        groq_fake.requests()[-1]["messages"]            # what the client sent

Use ``max_retries=0`` on the client to see each scripted response: by default the groq SDK
retries 408/409/429/5xx and connection errors itself (2 retries), which silently consumes
scripted answers (``script([500, 200])`` would then look like a plain success).

Success (HTTP 200)::

    {"id": "chatcmpl-...", "object": "chat.completion", "created": <unix seconds>,
     "model": <requested model>,
     "choices": [{"index": 0, "message": {"role": "assistant", "content": <text>},
                  "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

The content is ``""`` if ``empty_content`` is on, else ``responder(request_json)`` if a responder
is set, else ``reply_text`` (default ``"Hello from fake Groq"``). Errors use the OpenAI shape
``{"error": {"message": ..., "type": ..., "code": ...}}`` with defaults per status (400
invalid_request_error, 401 invalid_api_key, 404 model_not_found, 429 rate_limit_exceeded,
500 internal_server_error, 503 service_unavailable). A responder that raises is answered 500.

Switches (thread-safe, settable any time): ``latency_s``, ``malformed_json`` (200 with a
non-JSON body), ``empty_content``, ``reply_text``, ``responder``, ``script()`` (e.g.
``[500, 429, ("error", 400, "context_length_exceeded"), "drop", 200]``), ``fail_always(status)``,
``clear()`` and ``expected_api_key`` (mismatch -> 401 invalid_api_key, before the script).
``stream=true`` is refused with 400: this fake does not speak SSE.

Standalone: ``python -m tests.fakes.groq_api --port 0`` prints ``listening http://127.0.0.1:PORT``
and serves until SIGTERM/SIGINT. Control endpoints: ``GET /_fake/requests`` (request bodies, as
``requests()``; ``?wait_for=N&timeout=S`` long-polls), ``GET /_fake/records`` (full records),
``POST /_fake/script`` (JSON list), ``POST /_fake/fail_always`` (``{"status": 500}``),
``POST /_fake/config`` (``{"reply_text": "hi", "empty_content": true, "latency_s": 1}``),
``POST /_fake/clear|forget|reset``.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from app.devtools.local_http_server import HttpAnswer
from tests.fakes.http_fake import (
    FakeHttpServer,
    RecordedRequest,
    Scripted,
    Switch,
    json_response,
    serve_command_line,
    standalone_parser,
)

__all__ = ["CHAT_COMPLETIONS_PATH", "DEFAULT_REPLY", "FakeGroqApi", "Responder", "main"]

CHAT_COMPLETIONS_PATH = "/openai/v1/chat/completions"
DEFAULT_REPLY = "Hello from fake Groq"

Responder = Callable[[dict[str, Any]], str]

# status -> (type, code, message)
_OPENAI_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request_error", "invalid_request", "Invalid request"),
    401: ("invalid_request_error", "invalid_api_key", "Invalid API Key"),
    403: ("permission_error", "permission_denied", "Permission denied"),
    404: ("invalid_request_error", "model_not_found", "The model does not exist"),
    408: ("timeout_error", "request_timeout", "Request timed out"),
    413: ("invalid_request_error", "request_too_large", "Request Entity Too Large"),
    422: ("invalid_request_error", "unprocessable_entity", "Unprocessable Entity"),
    429: ("tokens", "rate_limit_exceeded", "Rate limit reached; please try again later"),
    500: ("internal_server_error", "internal_server_error", "Internal Server Error"),
    502: ("internal_server_error", "bad_gateway", "Bad Gateway"),
    503: ("internal_server_error", "service_unavailable", "Service Unavailable"),
}


class FakeGroqApi(FakeHttpServer):
    """Fake Groq chat completions (see the module docstring for wire format and switches)."""

    name: ClassVar[str] = "fake-groq-api"
    settable: ClassVar[frozenset[str]] = FakeHttpServer.settable | {
        "reply_text",
        "empty_content",
        "expected_api_key",
    }

    reply_text = Switch[str](DEFAULT_REPLY, str)
    """The content of every answer (unless ``responder`` or ``empty_content``)."""
    responder = Switch[Responder | None](None)
    """``fn(request_json) -> content``; overrides ``reply_text`` while set."""
    empty_content = Switch[bool](False, bool, cleared=True)
    """Answer ``"content": ""`` (overrides ``responder`` and ``reply_text``)."""
    expected_api_key = Switch[str | None](None)
    """If set, a request whose bearer key differs is answered 401 invalid_api_key."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        reply_text: str = DEFAULT_REPLY,
        responder: Responder | None = None,
        expected_api_key: str | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__(host, port, verbose=verbose)
        self.reply_text = self._initial_reply_text = reply_text
        self.responder = self._initial_responder = responder
        self.expected_api_key = expected_api_key

    def _clear_extra(self) -> None:
        # back to the constructor's content; expected_api_key is configuration, kept
        self.reply_text = self._initial_reply_text
        self.responder = self._initial_responder

    @staticmethod
    def error(status: int, code: str | None = None, *, message: str | None = None) -> Scripted:
        """A script item answering HTTP ``status`` with an OpenAI-style error body."""
        return Scripted(status=status, code=code, message=message)

    # ---------------------------------------------------------------- views

    def requests(self) -> list[Any]:
        """Parsed JSON bodies of every API request (``model``, ``messages``, ``temperature``,
        ``max_tokens``...), in arrival order; None for a body that was not JSON."""
        return [r.body for r in self.recorded()]

    def last_request(self) -> Any:
        """The most recent request body; LookupError if there was none."""
        bodies = self.requests()
        if not bodies:
            raise LookupError(f"{self.name}: no requests recorded")
        return bodies[-1]

    def requests_view(self) -> Any:
        return self.requests()

    # ---------------------------------------------------------------- wire format

    @staticmethod
    def error_body(status: int, code: str | None = None, message: str | None = None) -> Any:
        err_type, default_code, default_message = _OPENAI_ERRORS.get(
            status,
            ("internal_server_error", "internal_server_error", "Internal Server Error")
            if status >= 500
            else ("invalid_request_error", "invalid_request", "Invalid request"),
        )
        return {
            "error": {
                "message": message or default_message,
                "type": err_type,
                "code": code or default_code,
            }
        }

    def error_response(self, request: RecordedRequest, plan: Scripted) -> HttpAnswer:
        code = None if plan.code is None else str(plan.code)
        return json_response(plan.status, self.error_body(plan.status, code, plan.message))

    def precheck(self, request: RecordedRequest) -> HttpAnswer | None:
        if request.path.rstrip("/") != CHAT_COMPLETIONS_PATH:
            return json_response(
                404, self.error_body(404, "unknown_url", f"Unknown request URL: {request.path}")
            )
        if request.method != "POST":
            return json_response(
                405,
                self.error_body(405, "method_not_allowed", f"{request.method} is not allowed"),
            )
        expected = self.expected_api_key
        if expected is not None:
            scheme, _, key = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or key.strip() != expected:
                return json_response(401, self.error_body(401))
        body = request.body
        if not isinstance(body, dict):
            return json_response(400, self.error_body(400, message="Request body is not JSON"))
        if not isinstance(body.get("model"), str) or not body["model"]:
            return json_response(400, self.error_body(400, message="'model' is required"))
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return json_response(
                400, self.error_body(400, message="'messages' must be a non-empty array")
            )
        if body.get("stream"):
            return json_response(
                400, self.error_body(400, message="fake-groq-api does not support stream=true")
            )
        return None

    def success_response(self, request: RecordedRequest) -> HttpAnswer:
        body: dict[str, Any] = request.body
        try:
            content = self._content(body)
        except Exception as exc:  # the test's responder blew up: say so in the answer
            return json_response(
                500, self.error_body(500, message=f"fake-groq-api responder raised {exc!r}")
            )
        return json_response(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                "system_fingerprint": "fp_fake",
                "x_groq": {"id": f"req_fake_{uuid.uuid4().hex[:20]}"},
            },
        )

    def _content(self, body: dict[str, Any]) -> str:
        with self._lock:
            empty, responder, text = self.empty_content, self.responder, self.reply_text
        if empty:
            return ""
        if responder is not None:
            return str(responder(body))
        return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = standalone_parser("Fake Groq chat completions API")
    parser.add_argument("--reply-text", default=DEFAULT_REPLY)
    parser.add_argument("--expected-api-key", default=None, help="bearer key to insist on")
    return serve_command_line(FakeGroqApi, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
