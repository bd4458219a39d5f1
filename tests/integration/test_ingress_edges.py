"""The ingress answers every kind of input as the README's HTTP table says, and never with a 500."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile

import msgspec
import pytest
from httpx import Response
from redis.asyncio import Redis

from app.devtools.ports import free_port
from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message
from app.platform.eventlog.keys import Keys
from app.platform.settings import Settings
from tests.meta_fixtures import fixture_body
from tests.service import ingress


def _stream(settings: Settings) -> str:
    return Keys(settings.key_prefix, 1).stream(0)


async def _post_signed(settings: Settings, raw: bytes) -> Response:
    """``raw`` posted, signed with the test app secret, to a fresh ingress; its answer."""
    async with ingress(settings) as client:
        return await client.post("/webhooks/whatsapp", content=raw,
                                 headers=signed_headers(raw, "test-app-secret"))


@pytest.mark.parametrize(
    ("file", "variant"),
    [("message.json", "image"), ("message.json", "reaction"),
     ("outgoing_message.json", "text"), ("system.json", "identity_change"),
     ("account_update.json", "account_deleted")],
)
async def test_non_text_deliveries_get_200_and_no_event(
    settings: Settings, redis: Redis, file: str, variant: str
) -> None:
    raw = encode(fixture_body(file, variant))
    response = await _post_signed(settings, raw)
    assert response.status_code == 200
    assert await redis.xlen(_stream(settings)) == 0


async def test_a_status_delivery_gets_200_and_one_status_event(
    settings: Settings, redis: Redis
) -> None:
    raw = encode(fixture_body("message_status.json", "read"))
    response = await _post_signed(settings, raw)
    assert response.status_code == 200
    kinds = [fields[b"type"] for _, fields in await redis.xrange(_stream(settings))]
    assert kinds == [b"DeliveryStatusReceived"]


async def test_malformed_json_is_a_400(settings: Settings, redis: Redis) -> None:
    raw = b'{"object": "whatsapp_business_account", "entry": [}'
    response = await _post_signed(settings, raw)
    assert response.status_code == 400
    assert await redis.xlen(_stream(settings)) == 0


async def test_unknown_but_well_formed_json_is_a_200(settings: Settings, redis: Redis) -> None:
    for body in ({"hello": "world"}, [1, 2, 3], {"object": "page", "entry": "nope"}):
        raw = msgspec.json.encode(body)
        response = await _post_signed(settings, raw)
        assert response.status_code == 200, body
    assert await redis.xlen(_stream(settings)) == 0


async def test_body_over_one_mebibyte_is_a_413(settings: Settings, redis: Redis) -> None:
    message = text_message("15550009999", "x" * (1024 * 1024 + 10))
    raw = encode(delivery(message))
    response = await _post_signed(settings, raw)
    assert response.status_code == 413
    assert await redis.xlen(_stream(settings)) == 0


async def test_verification_echoes_the_challenge_only_for_the_right_token(
    settings: Settings,
) -> None:
    async with ingress(settings) as client:
        good = await client.get("/webhooks/whatsapp", params={
            "hub.mode": "subscribe", "hub.verify_token": "test-verify-token",
            "hub.challenge": "1158201444"})
        wrong = await client.get("/webhooks/whatsapp", params={
            "hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"})
        no_mode = await client.get("/webhooks/whatsapp", params={
            "hub.verify_token": "test-verify-token", "hub.challenge": "1"})
    assert good.status_code == 200
    assert good.text == "1158201444"
    assert good.headers["content-type"].startswith("text/plain")
    assert wrong.status_code == 403
    assert no_mode.status_code == 403


async def test_health_and_ready_answer(settings: Settings) -> None:
    async with ingress(settings) as client:
        health = await client.get("/health")
        ready = await client.get("/ready")
    assert health.status_code == 200
    assert ready.status_code == 200
    assert ready.json()["redis"] is True and ready.json()["postgres"] is True


async def _started_redis(server: str, port: int, folder: str,
                         probe: Redis) -> subprocess.Popen[bytes]:
    """``server`` (a redis-server) on ``port`` without persistence, once ``probe`` gets an
    answer to PING (five seconds at most)."""
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", folder], stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            await probe.ping()
            break
        except Exception:  # noqa: BLE001 - not up yet
            await asyncio.sleep(0.05)
    return process


async def test_redis_down_gives_503_and_recovers(settings: Settings) -> None:
    server = shutil.which("redis-server")
    assert server, "redis-server is needed for this test (it is on every CI machine)"
    port = free_port()
    folder = tempfile.mkdtemp(prefix="mecove-redis-")
    private = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{port}/0")
    raw = encode(delivery(text_message("15550004321", "hi", wamid="wamid.down")))
    headers = signed_headers(raw, "test-app-secret")
    probe = Redis.from_url(private.redis_url)
    process = await _started_redis(server, port, folder, probe)
    try:
        async with ingress(private) as client:
            process.terminate()
            process.wait(timeout=10)
            down = await client.post("/webhooks/whatsapp", content=raw, headers=headers)
            ready = await client.get("/ready")
            process = await _started_redis(server, port, folder, probe)
            back = await client.post("/webhooks/whatsapp", content=raw, headers=headers)
        assert down.status_code == 503
        assert ready.status_code == 503
        assert back.status_code == 200
        appended = [f[b"type"] for _, f in await probe.xrange(_stream(private))]
        assert appended.count(b"MessageReceived") == 1
        await probe.aclose()
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
