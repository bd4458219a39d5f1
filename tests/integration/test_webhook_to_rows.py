"""A signed webhook becomes one event in Redis and then rows in PostgreSQL, exactly once."""

from __future__ import annotations

import asyncio

import asyncpg
from redis.asyncio import Redis

from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message
from app.ingress.parse_webhook import parse_webhook
from app.platform.eventlog.keys import Keys
from app.platform.settings import Settings
from projections.projector import Projector
from tests.integration.consumer_helpers import events_of_type
from tests.meta_fixtures import fixture_body, fixture_variants
from tests.service import consumers, eventually, ingress


async def _count(database_url: str, table: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608
    finally:
        await connection.close()


async def _stream_length(redis: Redis, settings: Settings) -> int:
    """MessageReceived entries in the log (the user's UserKeyIssued is key bookkeeping)."""
    return len(await events_of_type(redis, settings, "MessageReceived"))


async def test_signed_text_webhook_ends_as_one_row_each(settings: Settings, redis: Redis) -> None:
    raw = encode(fixture_body("message.json", "text"))
    async with ingress(settings) as client:
        response = await client.post(
            "/webhooks/whatsapp", content=raw,
            headers=signed_headers(raw, settings.whatsapp_app_secret or ""),
        )
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert await _stream_length(redis, settings) == 1
    async with consumers(settings, [Projector.from_settings(settings)]):
        await eventually(lambda: _count(settings.database_url, "messages"))
    connection = await asyncpg.connect(settings.database_url)
    try:
        message = await connection.fetchrow("SELECT * FROM messages")
        identity = await connection.fetchrow("SELECT * FROM identities")
        users = await connection.fetchval("SELECT count(*) FROM users")
        archived = await connection.fetchval("SELECT count(*) FROM event_archive")
    finally:
        await connection.close()
    assert message["text"] == "Body Text"
    assert message["source_message_id"] == "wamid.xyzxyz"
    assert message["content_type"] == "text"
    assert message["raw_payload"] is not None
    assert identity["channel"] == "whatsapp"
    assert identity["channel_user_key"] == "+972987654321"
    assert message["identity_id"] == identity["id"]
    assert users == 1
    assert archived == 1


async def test_same_webhook_three_times_appends_one_event_and_one_row(
    settings: Settings, redis: Redis
) -> None:
    raw = encode(delivery(text_message("15550001234", "hello", wamid="wamid.dup3")))
    headers = signed_headers(raw, settings.whatsapp_app_secret or "")
    async with ingress(settings) as client:
        codes = [(await client.post("/webhooks/whatsapp", content=raw, headers=headers)).status_code
                 for _ in range(3)]
    assert codes == [200, 200, 200]
    assert await _stream_length(redis, settings) == 1
    async with consumers(settings, [Projector.from_settings(settings)]):
        await eventually(lambda: _count(settings.database_url, "messages"))
        await asyncio.sleep(0.3)  # would let a second (wrong) row land
    assert await _count(settings.database_url, "messages") == 1


async def test_twenty_concurrent_identical_deliveries_append_one_event(
    settings: Settings, redis: Redis
) -> None:
    raw = encode(delivery(text_message("15550001235", "hi", wamid="wamid.concurrent")))
    headers = signed_headers(raw, settings.whatsapp_app_secret or "")
    async with ingress(settings) as client:
        responses = await asyncio.gather(
            *(client.post("/webhooks/whatsapp", content=raw, headers=headers) for _ in range(20))
        )
    assert [r.status_code for r in responses] == [200] * 20
    assert await _stream_length(redis, settings) == 1


async def test_bad_signature_is_refused_and_appends_nothing(
    settings: Settings, redis: Redis
) -> None:
    raw = encode(delivery(text_message("15550001236", "hi")))
    async with ingress(settings) as client:
        wrong = await client.post("/webhooks/whatsapp", content=raw,
                                  headers=signed_headers(raw, "not-the-secret"))
        missing = await client.post("/webhooks/whatsapp", content=raw,
                                    headers={"Content-Type": "application/json"})
    assert wrong.status_code == 401
    assert missing.status_code == 401
    assert await _stream_length(redis, settings) == 0


async def test_several_messages_in_one_delivery_keep_their_order(
    settings: Settings, redis: Redis
) -> None:
    messages = [text_message("15550001237", f"m{i}", wamid=f"wamid.order{i}") for i in range(3)]
    raw = encode(delivery(*messages))
    async with ingress(settings) as client:
        response = await client.post("/webhooks/whatsapp", content=raw,
                                     headers=signed_headers(raw, "test-app-secret"))
    assert response.status_code == 200
    keys = Keys(settings.key_prefix, 1)
    entries = [(i, f) for i, f in await redis.xrange(keys.stream(0))
               if f[b"type"] == b"MessageReceived"]
    assert len(entries) == 3
    user_tracking = [k async for k in redis.scan_iter(match=f"{settings.key_prefix}:*:messages:*")]
    assert len(user_tracking) == 1
    scored = await redis.zrange(user_tracking[0], 0, -1, withscores=True)
    scores = [s for _, s in scored]
    assert scores == sorted(scores) and len(set(scores)) == 3
    first_score = scores[0]
    assert await redis.zcount(user_tracking[0], f"({first_score}", "+inf") == 2


async def test_concurrent_deliveries_sharing_one_script_call_each_get_their_own_answer(
    settings: Settings, redis: Redis
) -> None:
    from app.ingress.parse_webhook import events_from_texts, parse_webhook
    from app.platform.eventlog.append import EventLog
    from app.platform.eventlog.entries import decode_event

    log = EventLog(redis, Keys(settings.key_prefix, 1))
    deliveries = []
    for i in range(80):  # more than one coalesced call holds
        wamid = f"wamid.co{i % 60}"  # the last 20 repeat earlier wamids
        parsed = parse_webhook(encode(delivery(text_message(f"1555000{i % 60:04d}", f"t{i}",
                                                            wamid=wamid))))
        deliveries.append(events_from_texts(parsed.texts, 1_700_000_000_000 + i))
    results = await asyncio.gather(*(log.append_messages(d) for d in deliveries))
    winners: dict[str, int] = {}
    for events, [entry_id] in zip(deliveries, results, strict=True):
        if entry_id is None:
            continue
        winners[events[0].source_message_id] = winners.get(events[0].source_message_id, 0) + 1
        [(_, fields)] = await redis.xrange(Keys(settings.key_prefix, 1).stream(0),
                                          min=entry_id, max=entry_id)
        assert decode_event(fields).text == events[0].text  # this caller's own message
    # exactly one delivery per wamid was appended (which of two redeliveries wins is free)
    assert len(winners) == 60 and set(winners.values()) == {1}
    assert await redis.xlen(Keys(settings.key_prefix, 1).stream(0)) == 60


async def test_every_meta_text_from_a_sender_seen_before_is_logged_to_the_same_user(
    settings: Settings, redis: Redis,
) -> None:
    """pywa's bodies (written by another project), each posted twice in one ingress process:
    the second time, with fresh wamids, its senders are known, so the ingress appends through
    its one-script path (decision 0011) — which must log every text, to the first time's user."""
    bodies = []
    for n, (file, variant, body) in enumerate(fixture_variants()):
        raw = encode(body)
        if parse_webhook(raw).texts:  # own wamids per variant: several share pywa's
            first = raw.replace(b'"wamid.', f'"wamid.v{n}.'.encode())
            again = raw.replace(b'"wamid.', f'"wamid.again.v{n}.'.encode())
            bodies.append((f"{file}:{variant}", first, again))
    assert len(bodies) >= 3, "the fixtures hold text messages"
    secret = settings.whatsapp_app_secret or ""
    async with ingress(settings) as client:
        for name, *raws in bodies:
            for raw in raws:
                response = await client.post("/webhooks/whatsapp", content=raw,
                                             headers=signed_headers(raw, secret))
                assert response.status_code == 200, name
    texts = sum(len(parse_webhook(raw).texts) for _, raw, _ in bodies)
    events = await events_of_type(redis, settings, "MessageReceived")
    assert len(events) == 2 * texts
    user_of = {e.source_message_id: e.user_id for e in events}
    for event in events:
        if event.source_message_id.startswith("wamid.again."):
            first = "wamid." + event.source_message_id.removeprefix("wamid.again.")
            assert user_of[first] == event.user_id
