"""Whole processes: a replier killed mid-job, and ``mecove up`` answering a webhook."""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
from pathlib import Path

import httpx
import msgspec
import psutil
import pytest
from redis.asyncio import Redis

from app.devtools.ports import free_port
from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message
from app.platform.eventlog.keys import Keys
from app.platform.settings import Settings
from tests.fakes.graph_api import FakeGraphApi
from tests.fakes.groq_api import FakeGroqApi
from tests.integration.consumer_helpers import events_of_type
from tests.processes import env_for, start_mecove, stop, wait_for_http
from tests.service import eventually, ingress

pytestmark = pytest.mark.slow


async def test_a_replier_killed_before_acking_is_replaced_and_the_reply_sent_once(
    reply_settings: Settings, redis: Redis, graph: FakeGraphApi, groq: FakeGroqApi,
    tmp_path: Path,
) -> None:
    settings = msgspec.structs.replace(reply_settings, visibility_timeout_ms=1_500)
    raw = encode(delivery(text_message("15550004001", "are you there?", wamid="wamid.kill")))
    async with ingress(settings) as client:
        assert (await client.post("/webhooks/whatsapp", content=raw,
                                  headers=signed_headers(raw, "test-app-secret"))).status_code \
            == 200
    groq.latency_s = 30  # the first replier reads the job, then hangs inside the LLM call
    env = env_for(settings)
    first = start_mecove(["consume", "replier"], env, tmp_path / "first.log")
    try:
        await eventually(lambda: asyncio.sleep(0, result=len(groq.recorded()) >= 1),
                         timeout=20)
        stream = Keys(settings.key_prefix, 1).stream(0)
        kinds = {i: f[b"type"] for i, f in await redis.xrange(stream)}
        pending = await redis.xpending_range(stream, "replier", min="-", max="+", count=10)
        # the message is read, not acknowledged
        assert [kinds[p["message_id"]] for p in pending].count(b"MessageReceived") == 1
        stop(first, signal.SIGKILL)
        groq.latency_s = 0
        second = start_mecove(["consume", "replier"], env, tmp_path / "second.log")
        try:
            sends = await asyncio.to_thread(graph.wait_for_sends, 1, 30)
            await asyncio.sleep(1.0)  # room for a (wrong) second send
        finally:
            assert stop(second) == 0
    finally:
        stop(first, signal.SIGKILL)
    assert len(sends) == 1
    assert len(graph.sent()) == 1
    assert len(await events_of_type(redis, settings, "ReplySent")) == 1
    assert (await redis.xpending(stream, "replier"))["pending"] == 0


async def test_mecove_up_answers_a_signed_webhook_with_a_reply_at_the_graph_api(
    reply_settings: Settings, redis: Redis, graph: FakeGraphApi, groq: FakeGroqApi,
    tmp_path: Path,
) -> None:
    settings = msgspec.structs.replace(reply_settings, port=free_port())
    groq.reply_text = "Welcome to MeCove!"
    up = start_mecove(["up", "--host", "127.0.0.1"], env_for(settings), tmp_path / "up.log")
    try:
        await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{settings.port}/health", 30)
        raw = encode(delivery(text_message("15550004002", "hello", wamid="wamid.up")))
        request = urllib.request.Request(
            f"http://127.0.0.1:{settings.port}/webhooks/whatsapp", data=raw,
            headers=signed_headers(raw, "test-app-secret"), method="POST")
        posted = time.monotonic()
        status = (await asyncio.to_thread(urllib.request.urlopen, request, timeout=5)).status
        sends = await asyncio.to_thread(graph.wait_for_sends, 1, 20)
        reply_seconds = time.monotonic() - posted
        assert status == 200
        assert sends[0]["text"]["body"] == "Welcome to MeCove!"
        assert sends[0]["to"] == "+15550004002"
        print(f"webhook → reply at the fake Graph API: {reply_seconds * 1000:.0f} ms")

        async def projected() -> bool:
            import asyncpg

            connection = await asyncpg.connect(settings.database_url)
            try:
                return bool(await connection.fetchval(
                    "SELECT count(*) FROM messages WHERE reply_text = 'Welcome to MeCove!'"))
            finally:
                await connection.close()
        await eventually(projected, timeout=20)
    finally:
        code = stop(up, signal.SIGINT)
    log = (tmp_path / "up.log").read_text()
    assert code == 0, log[-3000:]
    for secret in ("test-app-secret", "test-permanent-token-0123456789", "gsk_test_key_0123456789"):
        assert secret not in log


async def test_mecove_api_with_two_workers_answers_every_webhook_from_two_processes(
    settings: Settings, redis: Redis, tmp_path: Path,
) -> None:
    port = free_port()
    env = env_for(settings, MECOVE_PORT=str(port), MECOVE_API_WORKERS="1")
    api = start_mecove(["api", "--host", "127.0.0.1", "--workers", "2"], env,
                       tmp_path / "api.log")
    try:
        await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{port}/health", 60)
        await eventually(lambda: asyncio.sleep(0, result=_worker_count(api.pid) == 2), timeout=30)
        bodies = [encode(delivery(text_message(f"1555000{n:04d}", f"hello {n}",
                                               wamid=f"wamid.workers.{n}")))
                  for n in range(20)]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            codes = [(await client.post("/webhooks/whatsapp", content=raw,
                                        headers=signed_headers(raw, "test-app-secret"))
                      ).status_code for raw in bodies]
    finally:
        stop(api, signal.SIGTERM)
    assert codes == [200] * 20
    assert len(await events_of_type(redis, settings, "MessageReceived")) == 20


def _worker_count(pid: int) -> int:
    """uvicorn's worker processes under ``pid`` (multiprocessing's resource tracker aside)."""
    return sum("spawn_main" in " ".join(child.cmdline())
               for child in psutil.Process(pid).children())
