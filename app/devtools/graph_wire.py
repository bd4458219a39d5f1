"""Meta's WhatsApp Cloud (Graph) API messages endpoint, as its stand-ins answer it.

One place for the wire format shared by the simulated Graph API of ``mecove simulate``
(``app.devtools.simulated_graph_api``) and the scriptable test fake (``tests/fakes/graph_api``):
the endpoint's path, the accepted answer, Meta's error object and which sends Meta refuses.

Accepted (HTTP 200)::

    {"messaging_product": "whatsapp",
     "contacts": [{"input": "<to>", "wa_id": "<to, digits only>"}],
     "messages": [{"id": "wamid.<unique>"}]}

Refused::

    {"error": {"message": "(#131047) Re-engagement message", "type": "OAuthException",
               "code": 131047, "error_subcode": ..., "error_data": {...}, "fbtrace_id": "..."}}
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from app.devtools.local_http_server import HttpAnswer

__all__ = [
    "META_ERRORS",
    "MESSAGES_PATH",
    "accepted_answer",
    "default_error_code",
    "error_answer",
    "error_body",
    "new_outbound_wamid",
    "refuse_request",
    "refuse_send",
]

MESSAGES_PATH = re.compile(r"^/(?P<version>v\d+\.\d+)/(?P<phone_number_id>[^/]+)/messages/?$")

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


def default_error_code(status: int) -> int:
    """The Meta error code an error of HTTP ``status`` usually carries."""
    if status in _DEFAULT_CODE_BY_STATUS:
        return _DEFAULT_CODE_BY_STATUS[status]
    return 1 if status >= 500 else 100


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


def error_answer(
    status: int, code: int, message: str | None = None, subcode: int | None = None
) -> HttpAnswer:
    """An HTTP ``status`` answer carrying Meta's error object (401 adds WWW-Authenticate)."""
    headers = {"WWW-Authenticate": 'OAuth "Facebook Platform" "invalid_token"'} if status == 401 \
        else {}
    body = json.dumps(error_body(code, message, subcode)).encode("utf-8")
    return HttpAnswer(status, body, headers=headers)


def new_outbound_wamid() -> str:
    """A fresh id for an accepted send, recognisably a stand-in's (``wamid.FAKE...``)."""
    return "wamid.FAKE" + secrets.token_hex(16).upper()


def accepted_answer(send: dict[str, Any], wamid: str) -> HttpAnswer:
    """The HTTP 200 Meta gives an accepted send, naming its ``wamid``: the contact is the phone
    (``to``, with ``wa_id``) or, for a send by business-scoped user id, the ``recipient`` (with
    ``user_id``, no ``wa_id``)."""
    to = send.get("to")
    contact = ({"input": str(to), "wa_id": re.sub(r"\D", "", str(to))} if to
               else {"input": str(send["recipient"]), "user_id": str(send["recipient"])})
    body = {"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": wamid}]}
    return HttpAnswer(200, json.dumps(body).encode("utf-8"))


def refuse_request(method: str, path: str) -> HttpAnswer | None:
    """Meta's answer to a request that is not a POST to the messages endpoint; None if it is.

    ``path`` is without the query string.
    """
    if MESSAGES_PATH.match(path) is None:
        return error_answer(400, 2500, f"Unknown path components: {path}")
    if method != "POST":
        return error_answer(400, 100, f"Unsupported {method} request.", subcode=33)
    return None


def is_read_mark(body: Any) -> bool:
    """A read receipt, with or without a typing indicator: ``{"status": "read", "message_id": …}``
    posted to the messages endpoint. It is not a send."""
    return isinstance(body, dict) and body.get("status") == "read"


def read_mark_answer(body: dict[str, Any]) -> HttpAnswer:
    """Meta's answer to a read receipt: ``{"success": true}``, or 400 without a ``message_id``."""
    if not isinstance(body.get("message_id"), str) or not body["message_id"]:
        return error_answer(400, 100, "(#100) The parameter message_id is required.")
    return HttpAnswer(200, json.dumps({"success": True}).encode("utf-8"))


def refuse_send(body: Any) -> HttpAnswer | None:
    """Meta's 400 for a send body it would refuse (``body`` as parsed JSON); None if valid.

    Meta wants a JSON object with ``messaging_product == "whatsapp"`` and a ``to`` (a phone) or a
    ``recipient`` (a business-scoped user id); a ``text``
    message (the default type) needs a non-empty ``text.body``.
    """
    problem = _send_problem(body)
    return None if problem is None else error_answer(400, 100, f"(#100) {problem}")


def _send_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    if body.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required and must be 'whatsapp'."
    addresses = [body.get(k) for k in ("to", "recipient") if body.get(k) is not None]
    if not addresses or not all(isinstance(a, str) and a.strip() for a in addresses):
        return "The parameter to or recipient is required."
    if body.get("type", "text") == "text":
        text = body.get("text")
        if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"]:
            return "The parameter text['body'] is required."
    return None
