"""Baseline (a): a bare Litestar endpoint that reads the body and answers 200.

``python -m bench.servers.bare_litestar --port P --uvicorn-options '{...}'``
"""

from __future__ import annotations

import argparse
import json

import uvicorn
from litestar import Litestar, Request, Response, get, post

OK_BODY = b'{"ok":true}'


@post("/webhooks/whatsapp", status_code=200)
async def receive(request: Request) -> Response[bytes]:
    await request.body()
    return Response(content=OK_BODY, status_code=200, media_type="application/json")


@get("/health", sync_to_thread=False)
def health() -> dict[str, bool]:
    return {"ok": True}


def create_bare_app() -> Litestar:
    return Litestar(route_handlers=[receive, health], logging_config=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--uvicorn-options", default="{}", help="JSON of uvicorn.run kwargs")
    args = parser.parse_args()
    uvicorn.run(create_bare_app(), host="127.0.0.1", port=args.port,
                **json.loads(args.uvicorn_options))


if __name__ == "__main__":
    main()
