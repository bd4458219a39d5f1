"""Sending text replies through Meta's Graph API with httpx; errors classified for retries."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from app.platform.runtime.retry_policy import NonRetryableError, RetryableError

log = logging.getLogger("mecove.graph")

# Meta error codes worth another try: throttling, pair rate limit, spam rate limit, unknown
# temporary error, app-level rate limit.
RETRYABLE_CODES = frozenset({130429, 131056, 131048, 80007, 4, 1, 2, 131000, 131016})


class GraphSendError(Exception):
    """Base for send failures: an error answer from Meta, or a network error. The replier
    counts either as not delivered and releases the message's reply outcome."""


class GraphRetryableError(GraphSendError, RetryableError):
    pass


class GraphPermanentError(GraphSendError, NonRetryableError):
    pass


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


def is_retryable(error: GraphError) -> bool:
    """429, 5xx and Meta's throttling codes: try again. 190, 131047 and other 4xx: do not."""
    if error.code in RETRYABLE_CODES:
        return True
    return error.status == 429 or error.status >= 500


def classify(error: GraphError) -> GraphSendError:
    text = f"graph {error.status} code={error.code}: {error.message}"
    return GraphRetryableError(text) if is_retryable(error) else GraphPermanentError(text)


def message_body(to: str | None, text: str, context_message_id: str | None,
                 recipient: str | None = None) -> dict[str, Any]:
    """The ``/messages`` body: ``to`` = the phone when known, else ``recipient`` = the BSUID."""
    body: dict[str, Any] = {"messaging_product": "whatsapp"}
    if to:
        body["to"] = to
    elif recipient:
        body["recipient"] = recipient
    else:
        raise ValueError("a reply needs a phone number or a business-scoped user id")
    body["type"] = "text"
    body["text"] = {"body": text}
    if context_message_id:
        body["context"] = {"message_id": context_message_id}
    return body


class GraphClient:
    def __init__(
        self, *, base_url: str, version: str, phone_number_id: str, token: str,
        timeout_s: float = 10.0,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/{version}/{phone_number_id}/messages"
        self._client = httpx.AsyncClient(
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {token}"},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    async def send_text(self, to: str | None, text: str, context_message_id: str | None,
                        recipient: str | None = None) -> str | None:
        """Send to the phone ``to``, else to the BSUID ``recipient``; returns Meta's outbound
        message id (None if a 200 carried none)."""
        try:
            response = await self._client.post(
                self._url, json=message_body(to, text, context_message_id, recipient)
            )
        except httpx.TransportError as exc:
            raise GraphRetryableError(f"network error: {type(exc).__name__}") from exc
        if response.status_code >= 300:
            raise classify(parse_graph_error(response.status_code, response.content))
        try:
            payload = response.json()
            return str(payload["messages"][0]["id"])
        except (ValueError, KeyError, IndexError, TypeError):
            log.warning("graph accepted the message without a readable id")
            return None

    async def close(self) -> None:
        await self._client.aclose()
