"""Baseline (info): a raw ASGI app, no framework, that reads the body and answers 200.

The floor of the server itself: what uvicorn (its loop, HTTP parser and ASGI plumbing) costs
per request with nothing above it, so the best any Python app under ``mecove api``'s server
can reach.

``python -m bench.servers.raw_asgi --port P --uvicorn-options '{...}'``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OK_BODY = b'{"ok":true}'
OK_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"11")]
OK_START: Message = {"type": "http.response.start", "status": 200, "headers": OK_HEADERS}
OK_END: Message = {"type": "http.response.body", "body": OK_BODY}


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def raw_app(scope: Message, receive: Receive, send: Send) -> None:
    """Any HTTP request: read the whole body, answer 200 ``{"ok":true}``."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(OK_START)
    await send(OK_END)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvicorn-options", default="{}", help="JSON of uvicorn.run kwargs")
    args = parser.parse_args()
    uvicorn.run(raw_app, host="127.0.0.1", port=args.port, **json.loads(args.uvicorn_options))


if __name__ == "__main__":
    main()
