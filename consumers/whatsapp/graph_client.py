"""Sending text replies and typing indicators through Meta's Graph API with httpx.

Every way a send can end is one typed outcome the replier acts on:

* an error answer from Meta: ``GraphPairLimited`` (131056, this user gets too many messages),
  ``GraphThroughputLimited`` (130429, 80007, 4 or another 429: the whole number sends too
  fast), ``GraphRetryableError`` (5xx and Meta's temporary codes) or ``GraphPermanentError``;
* a transport error that provably happened before the request left (``send_fate`` says
  ``NOT_SENT``): ``GraphNotSent``, retried;
* a transport error after the request may have been written (``IN_DOUBT``):
  ``GraphSendInDoubt``. Meta may have delivered it, so it must never be resent automatically
  (docs/decisions/0003-reply-at-most-once.md).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from app.platform.http_transport import CookielessAsyncClient
from app.platform.runtime.retry_policy import NonRetryableError, RetryableError

__all__ = [
    "GraphClient",
    "GraphError",
    "GraphNotSent",
    "GraphPairLimited",
    "GraphPermanentError",
    "GraphRetryableError",
    "GraphSendError",
    "GraphSendInDoubt",
    "GraphThroughputLimited",
    "SendFate",
    "classify",
    "message_body",
    "parse_graph_error",
    "send_fate",
    "typing_indicator_body",
]

log = logging.getLogger("mecove.graph")

PAIR_RATE_LIMIT = 131056
# The whole business number (or app) sends too fast: throughput, WABA and app rate limits.
THROUGHPUT_CODES = frozenset({130429, 80007, 4})
# Meta error codes worth another try on the generic schedule: spam rate limit, unknown or
# temporary errors.
RETRYABLE_CODES = frozenset({131048, 1, 2, 131000, 131016})


class GraphSendError(Exception):
    """Base for send failures: an error answer from Meta, or a transport error."""


class GraphRetryableError(GraphSendError, RetryableError):
    """Meta answered with an error that may pass later (5xx, temporary codes)."""


class GraphPermanentError(GraphSendError, NonRetryableError):
    """Meta refused the message for good (190, 131047, other 4xx)."""


class GraphPairLimited(GraphRetryableError):
    """131056: too many messages to this user lately; nothing was sent."""


class GraphThroughputLimited(GraphRetryableError):
    """130429, 80007, 4 or a 429: the number as a whole sends too fast; nothing was sent."""


class GraphNotSent(GraphRetryableError):
    """The request never left (connect error or timeout, pool timeout): safe to retry."""


class GraphSendInDoubt(GraphSendError, NonRetryableError):
    """The request may have reached Meta (timeout or connection loss after writing it)."""


class SendFate(enum.Enum):
    """Where a transport error leaves a request: provably never sent, or maybe delivered."""

    NOT_SENT = "not_sent"
    IN_DOUBT = "in_doubt"


# Raised before a byte of the request is written: no connection, no pool slot, the proxy or
# the URL refused. Every other error may come after the request was (partly) written.
_NEVER_SENT: tuple[type[BaseException], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.InvalidURL,
)


def send_fate(error: BaseException) -> SendFate:
    """``NOT_SENT`` for errors raised before the request left, ``IN_DOUBT`` for any other
    (read/write timeouts, read/write errors, protocol errors, unknown errors)."""
    return SendFate.NOT_SENT if isinstance(error, _NEVER_SENT) else SendFate.IN_DOUBT


@dataclass(frozen=True, slots=True)
class GraphError:
    status: int
    code: int | None
    message: str


def parse_graph_error(status: int, body: bytes) -> GraphError:
    """Meta's ``{"error": {"code": ..., "message": ...}}``, tolerant of anything else."""
    code: int | None = None
    message = body[:200].decode(errors="replace")
    try:
        decoded: Any = msgspec.json.decode(body)
        error = decoded.get("error") if isinstance(decoded, dict) else None
        if isinstance(error, dict):
            raw_code = error.get("code")
            code = int(raw_code) if isinstance(raw_code, int | str) and str(raw_code).isdigit() \
                else None
            message = str(error.get("message", message))[:200]
    except msgspec.DecodeError:
        pass
    return GraphError(status, code, message)


def classify(error: GraphError) -> GraphSendError:
    """The typed failure of an error answer: pair limit, throughput limit, retryable (5xx and
    Meta's temporary codes) or permanent (190, 131047 and other 4xx)."""
    text = f"graph {error.status} code={error.code}: {error.message}"
    if error.code == PAIR_RATE_LIMIT:
        return GraphPairLimited(text)
    if error.code in THROUGHPUT_CODES or (error.status == 429 and error.code is None):
        return GraphThroughputLimited(text)
    if error.code in RETRYABLE_CODES or error.status == 429 or error.status >= 500:
        return GraphRetryableError(text)
    return GraphPermanentError(text)


def _address(body: dict[str, Any], to: str | None, recipient: str | None) -> None:
    """``to`` = the phone when known, else ``recipient`` = the BSUID."""
    if to:
        body["to"] = to
    elif recipient:
        body["recipient"] = recipient
    else:
        raise ValueError("a reply needs a phone number or a business-scoped user id")


def message_body(to: str | None, text: str, context_message_id: str | None,
                 recipient: str | None = None) -> dict[str, Any]:
    """The ``/messages`` body of a text reply to ``to`` (phone) or ``recipient`` (BSUID)."""
    body: dict[str, Any] = {"messaging_product": "whatsapp"}
    _address(body, to, recipient)
    body["type"] = "text"
    body["text"] = {"body": text}
    if context_message_id:
        body["context"] = {"message_id": context_message_id}
    return body


def typing_indicator_body(message_id: str) -> dict[str, Any]:
    """The ``/messages`` body marking inbound ``message_id`` read with "typing…" shown."""
    return {"messaging_product": "whatsapp", "status": "read", "message_id": message_id,
            "typing_indicator": {"type": "text"}}


_json = msgspec.json.Encoder().encode
_JSON_HEADERS = {"Content-Type": "application/json"}


class _SentMessage(msgspec.Struct):
    id: str


class _SendAnswer(msgspec.Struct):
    """The part of Meta's answer to a send that the replier keeps: the outbound id."""

    messages: list[_SentMessage]


_read_sent = msgspec.json.Decoder(_SendAnswer).decode


class GraphClient:
    """One business number's ``/messages`` endpoint; sends and typing indicators share one
    HTTP transport (``transport``, e.g. also the LLM client's; None for httpx's own).

    With a transport given, each call hands its request to the transport directly: an
    ``httpx.AsyncClient`` would add its header merging, auth and redirect steps (none of which
    a POST with a fixed bearer token uses) to every call. Without one (a proxy named in the
    environment, which only httpx's own transport speaks) the calls go through the client.
    """

    def __init__(
        self, *, base_url: str, version: str, phone_number_id: str, token: str,
        timeout_s: float = 10.0, typing_timeout_s: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # Parsed once: httpx parses a str URL (and checks it for an IP address) on every call.
        self._url = httpx.URL(f"{base_url.rstrip('/')}/{version}/{phone_number_id}/messages")
        self._timeout = httpx.Timeout(timeout_s)
        self._typing_timeout = httpx.Timeout(min(typing_timeout_s, timeout_s))
        self._headers = {"Authorization": f"Bearer {token}", **_JSON_HEADERS}
        self._transport = transport
        self._client = None if transport is not None else CookielessAsyncClient(
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    async def _post(self, body: bytes, timeout: httpx.Timeout) -> httpx.Response:
        """POST ``body`` to ``/messages``; the answer, read whole."""
        if self._client is not None:
            return await self._client.post(self._url, content=body, headers=self._headers,
                                           timeout=timeout)
        assert self._transport is not None
        request = httpx.Request("POST", self._url, headers=self._headers, content=body,
                                extensions={"timeout": timeout.as_dict()})
        response = await self._transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def send_text(self, to: str | None, text: str, context_message_id: str | None,
                        recipient: str | None = None) -> str | None:
        """Send to the phone ``to``, else to the BSUID ``recipient``; returns Meta's outbound
        message id (None if a 200 carried none). Raises a ``GraphSendError`` subclass."""
        body = _json(message_body(to, text, context_message_id, recipient))
        try:
            response = await self._post(body, self._timeout)
        except Exception as exc:
            name = type(exc).__name__
            if send_fate(exc) is SendFate.NOT_SENT:
                raise GraphNotSent(f"not sent: {name}") from exc
            raise GraphSendInDoubt(f"send in doubt: {name} after the request may have "
                                   "reached Meta") from exc
        if response.status_code >= 300:
            raise classify(parse_graph_error(response.status_code, response.content))
        try:
            return _read_sent(response.content).messages[0].id
        except (msgspec.DecodeError, IndexError):
            log.warning("graph accepted the message without a readable id")
            return None

    async def show_typing(self, message_id: str) -> None:
        """Mark inbound ``message_id`` read and show "typing…"; raises ``GraphSendError`` or
        an httpx error on failure (the caller ignores it). Uses the short typing timeout."""
        response = await self._post(_json(typing_indicator_body(message_id)),
                                    self._typing_timeout)
        if response.status_code >= 300:
            raise classify(parse_graph_error(response.status_code, response.content))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        elif self._transport is not None:
            await self._transport.aclose()
