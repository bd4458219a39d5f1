"""Baseline (b): the webhook receiver a Python team would otherwise write — FastAPI + arq.

It does the same work as the ingress, the usual way: check Meta's signature, validate the
body with pydantic, and enqueue one arq job per text message with the wamid as the job id
(arq's own de-duplication), answering 200 once the jobs are queued.

Runs in its own virtualenv (``bench/peer_env.py``: arq pins redis < 6, the project does not),
as a plain script, so it imports nothing of the project::

    peer-venv/bin/python bench/servers/fastapi_arq.py --port P --redis-url URL --queue Q \
        --app-secret S --uvicorn-options '{...}'
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class TextBody(BaseModel):
    body: str


class Message(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    sender: str = Field(alias="from")
    id: str
    type: str
    timestamp: str | None = None
    text: TextBody | None = None


class ChangeValue(BaseModel):
    messages: list[Message] = []


class Change(BaseModel):
    field: str | None = None
    value: ChangeValue | None = None


class Entry(BaseModel):
    id: str | None = None
    changes: list[Change] = []


class Webhook(BaseModel):
    object: str | None = None
    entry: list[Entry] = []


def create_peer_app(redis_url: str, queue: str, app_secret: str) -> FastAPI:
    state: dict[str, ArqRedis] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["arq"] = await create_pool(
            RedisSettings.from_dsn(redis_url), default_queue_name=queue
        )
        try:
            yield
        finally:
            await state["arq"].aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/webhooks/whatsapp")
    async def receive(request: Request) -> Any:
        body = await request.body()
        expected = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
        given = request.headers.get("x-hub-signature-256", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return JSONResponse({"ok": False, "error": "invalid signature"}, status_code=401)
        try:
            webhook = Webhook.model_validate_json(body)
        except ValidationError:
            return JSONResponse({"ok": False, "error": "malformed"}, status_code=400)
        for entry in webhook.entry:
            for change in entry.changes:
                for message in change.value.messages if change.value else ():
                    if message.type == "text" and message.text is not None:
                        await state["arq"].enqueue_job(
                            "handle_incoming_message",
                            message.model_dump(by_alias=True),
                            _job_id=message.id,
                        )
        return {"ok": True}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="FastAPI + arq webhook receiver (baseline)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--app-secret", required=True)
    parser.add_argument("--uvicorn-options", default="{}", help="JSON of uvicorn.run kwargs")
    args = parser.parse_args()
    app = create_peer_app(args.redis_url, args.queue, args.app_secret)
    uvicorn.run(app, host="127.0.0.1", port=args.port, **json.loads(args.uvicorn_options))


if __name__ == "__main__":
    main()
