"""A built-in stand-in for Meta's Graph API send endpoint, used by ``mecove simulate``.

Answers ``POST /{version}/{phone_number_id}/messages`` as Meta does (the wire format is
``app.devtools.graph_wire``) and hands each accepted text send to a callback, stamped with the
time it arrived. Sends Meta would refuse get Meta's error object; so does any send that is not
a text message, since the simulator shows texts only. Served by ``LocalHttpServer``.

It has no error scripts or latency switches: that is the test fake's job
(``tests/fakes/graph_api.py``, built on the same wire format), which product code does not
import.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.devtools.graph_wire import (
    MESSAGES_PATH,
    accepted_answer,
    error_answer,
    is_read_mark,
    new_outbound_wamid,
    read_mark_answer,
    refuse_request,
    refuse_send,
)
from app.devtools.local_http_server import HttpAnswer, HttpRequest, LocalHttpServer

__all__ = ["ReceivedSend", "SimulatedGraphApi"]


@dataclass(frozen=True, slots=True)
class ReceivedSend:
    """One accepted send: to whom (``to`` a phone, or ``recipient`` a BSUID), what, quoting
    which wamid (None: standalone), when."""

    phone_number_id: str
    to: str | None
    text: str
    context_message_id: str | None
    outbound_id: str
    received_at: float  # the stand-in's clock (time.monotonic by default)
    recipient: str | None = None


class SimulatedGraphApi(LocalHttpServer):
    """Serve from ``start()`` until ``stop()``; ``on_send`` is called from the server's threads."""

    def __init__(self, on_send: Callable[[ReceivedSend], None], *, host: str = "127.0.0.1",
                 port: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(self.answer, host=host, port=port, name="simulated-graph-api")
        self._on_send = on_send
        self._clock = clock

    def answer(self, request: HttpRequest) -> HttpAnswer:
        """Meta's answer to ``request``; an accepted text send also goes to ``on_send``."""
        path = urlsplit(request.target).path
        body = _json_or_none(request.body)
        refusal = refuse_request(request.method, path)
        if refusal is None and is_read_mark(body):
            return read_mark_answer(body)  # the replier's typing indicator: no send
        refusal = refusal or refuse_send(body)
        if refusal is not None:
            return refusal
        if body.get("type", "text") != "text":
            return error_answer(400, 100, "(#100) The simulated Graph API takes text messages "
                                          "only.")
        match = MESSAGES_PATH.match(path)
        assert match is not None  # refuse_request checked the path
        context = body.get("context")
        outbound_id = new_outbound_wamid()
        self._on_send(ReceivedSend(
            phone_number_id=match["phone_number_id"],
            to=body.get("to"),
            text=body["text"]["body"],
            context_message_id=context.get("message_id") if isinstance(context, dict) else None,
            outbound_id=outbound_id,
            received_at=self._clock(),
            recipient=body.get("recipient"),
        ))
        return accepted_answer(body, outbound_id)


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None
