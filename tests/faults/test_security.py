"""Security edges of the ingress: signatures, the verification token, the body limit and the
debug route. (Secrets in logs are checked on the soak's process logs, in test_soak.)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from app.devtools.ports import free_port
from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message
from app.platform.eventlog.entries import TYPE
from app.platform.eventlog.keys import Keys
from app.platform.settings import Settings
from tests.faults.ledger import dedupe_marks
from tests.faults.pipeline import Pipeline
from tests.service import ingress

SECRET = "test-app-secret"
VERIFY_TOKEN = "test-verify-token"
MiB = 1024 * 1024
BODY = encode(delivery(text_message("15550006001", "let me in", wamid="wamid.sec.1")))


def _hmac(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


BAD_SIGNATURES: dict[str, dict[str, str | bytes]] = {
    "no signature header": {},
    "an empty header": {"X-Hub-Signature-256": ""},
    "the wrong secret": {"X-Hub-Signature-256": "sha256=" + _hmac(BODY, "not-the-secret")},
    "another body's signature": {"X-Hub-Signature-256": "sha256=" + _hmac(b"{}", SECRET)},
    "no sha256= prefix": {"X-Hub-Signature-256": _hmac(BODY, SECRET)},
    "a sha1 signature": {"X-Hub-Signature-256": "sha1=" + hmac.new(
        SECRET.encode(), BODY, hashlib.sha1).hexdigest()},
    "a truncated signature": {"X-Hub-Signature-256": "sha256=" + _hmac(BODY, SECRET)[:-2]},
    "the signature in the old header": {"X-Hub-Signature": "sha256=" + _hmac(BODY, SECRET)},
    "not hex": {"X-Hub-Signature-256": "sha256=" + "zz" * 32},
    "a non-ASCII header": {"X-Hub-Signature-256": ("sha256=é" + _hmac(BODY, SECRET)[1:]).encode(
        "latin-1")},
}


@pytest.mark.parametrize("case", list(BAD_SIGNATURES))
async def test_a_bad_or_missing_signature_is_a_401_and_appends_nothing(
    settings: Settings, redis: Redis, case: str,
) -> None:
    headers = [(b"Content-Type", b"application/json")] + [
        (name.encode(), value if isinstance(value, bytes) else value.encode())
        for name, value in BAD_SIGNATURES[case].items()]
    async with ingress(settings) as client:
        response = await client.post("/webhooks/whatsapp", content=BODY, headers=headers)
    keys = Keys(settings.key_prefix, settings.partitions)
    assert response.status_code == 401
    assert await redis.xlen(keys.stream(0)) == 0
    assert await dedupe_marks(redis, keys) == set()


async def test_the_same_body_with_the_right_signature_is_accepted(
    settings: Settings, redis: Redis,
) -> None:
    async with ingress(settings) as client:
        response = await client.post("/webhooks/whatsapp", content=BODY,
                                     headers=signed_headers(BODY, SECRET))
    assert response.status_code == 200
    stream = Keys(settings.key_prefix, settings.partitions).stream(0)
    appended = [f[TYPE] for _, f in await redis.xrange(stream)]
    assert appended.count(b"MessageReceived") == 1


WRONG_VERIFICATIONS: dict[str, dict[str, str]] = {
    "a wrong token": {"hub.mode": "subscribe", "hub.verify_token": "guess"},
    "no token": {"hub.mode": "subscribe"},
    "an empty token": {"hub.mode": "subscribe", "hub.verify_token": ""},
    "the token with a suffix": {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN + "x"},
    "a prefix of the token": {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN[:-1]},
    "the token in another case": {"hub.mode": "subscribe",
                                  "hub.verify_token": VERIFY_TOKEN.upper()},
    "the right token but no mode": {"hub.verify_token": VERIFY_TOKEN},
    "the right token but another mode": {"hub.mode": "unsubscribe",
                                         "hub.verify_token": VERIFY_TOKEN},
}


@pytest.mark.parametrize("case", list(WRONG_VERIFICATIONS))
async def test_verification_with_a_wrong_token_is_a_403_and_never_echoes_the_challenge(
    settings: Settings, case: str,
) -> None:
    params = {**WRONG_VERIFICATIONS[case], "hub.challenge": "echo-me-1158201444"}
    async with ingress(settings) as client:
        response = await client.get("/webhooks/whatsapp", params=params)
    assert response.status_code == 403
    assert "echo-me" not in response.text


async def test_without_a_configured_verify_token_every_verification_is_a_403(
    settings: Settings,
) -> None:
    unset = msgspec.structs.replace(settings, whatsapp_verify_token=None)
    async with ingress(unset) as client:
        for token in ("", "None", "null", VERIFY_TOKEN):
            response = await client.get("/webhooks/whatsapp", params={
                "hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "c"})
            assert response.status_code == 403, token


async def _chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start:start + size]


@pytest.mark.slow
async def test_a_body_over_one_mebibyte_is_a_413_with_or_without_a_content_length(
    settings: Settings, redis: Redis, tmp_path: Path,
) -> None:
    """Against a real ``mecove api``: a declared length and a chunked upload alike."""
    big = encode(delivery(text_message("15550006002", "x" * MiB, wamid="wamid.sec.big")))
    headers = signed_headers(big, SECRET)  # a valid signature: refused for its size alone
    api_settings = msgspec.structs.replace(settings, port=free_port())
    with Pipeline(api_settings, tmp_path) as pipeline:
        await pipeline.start_api()
        url = f"{pipeline.base_url}/webhooks/whatsapp"
        async with httpx.AsyncClient(timeout=30) as client:
            declared = await client.post(url, content=big, headers=headers)
            chunked = await client.post(url, content=_chunks(big), headers=headers)
            after = await client.post(url, content=BODY, headers=signed_headers(BODY, SECRET))
        unclean = pipeline.unclean_exits(pipeline.stop_all())
    keys = Keys(settings.key_prefix, settings.partitions)
    assert declared.status_code == 413
    assert chunked.status_code == 413
    assert after.status_code == 200, "the ingress must keep serving after refusing a big body"
    appended = [f[TYPE] for _, f in await redis.xrange(keys.stream(0))]
    assert appended.count(b"MessageReceived") == 1  # only the small one
    assert unclean == {}


async def _add_identity(database_url: str, phone: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        user_id = await connection.fetchval(
            "INSERT INTO users (id) VALUES (gen_random_uuid()) RETURNING id")
        await connection.execute(
            "INSERT INTO identities (id, user_id, channel, channel_user_key) "
            "VALUES (gen_random_uuid(), $1, 'whatsapp', $2)", user_id, phone)
    finally:
        await connection.close()


async def test_debug_enqueue_summary_is_404_unless_mecove_debug_is_on(
    settings: Settings, redis: Redis,
) -> None:
    await _add_identity(settings.database_url, "+10000000000")
    keys = Keys(settings.key_prefix, settings.partitions)
    async with ingress(msgspec.structs.replace(settings, debug=False)) as client:
        off = [await client.get("/debug/enqueue-summary"),
               await client.post("/debug/enqueue-summary"),
               await client.get("/debug/enqueue-summary", params={"phone": "+10000000000"})]
        schema = (await client.get("/schema/openapi.json")).json()
    assert [r.status_code for r in off] == [404, 404, 404]
    assert not any(path.startswith("/debug") for path in schema["paths"])
    assert await redis.xlen(keys.stream(0)) == 0
    async with ingress(msgspec.structs.replace(settings, debug=True)) as client:
        on = await client.post("/debug/enqueue-summary")
    assert on.status_code == 200
    assert on.json()["ok"] is True and on.json()["jobId"]
    assert await redis.xlen(keys.stream(0)) == 1
