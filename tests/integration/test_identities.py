"""Users named by phone, by business-scoped user id (BSUID), or both: one person, one user."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import msgspec
import pytest
from redis.asyncio import Redis

from app.devtools.webhook_bodies import encode, signed_headers
from app.ingress import parse_webhook as parser
from app.ingress.recovery import recover_unreadable
from app.operations.log_status import read_status
from app.platform.eventlog.append import EventLog
from app.platform.eventlog.conversation_keys import ConversationKeys
from app.platform.eventlog.keys import Keys
from app.platform.identities import IdentityLinks
from app.platform.settings import Settings
from consumers.summarizer.summary_handler import build_summary_handler
from projections.projector import Projector
from projections.replay import replay
from tests.fakes.graph_api import FakeGraphApi
from tests.integration.consumer_helpers import drained, events_of_type, master_of, replier
from tests.integration.test_operations import checksums
from tests.service import consumers, eventually, ingress

PHONE = "919130099484"
BSUID = "US.13491208655302741918"


def _text(wamid: str, body: str, *, phone: str | None, bsuid: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"id": wamid, "timestamp": "1700000000", "type": "text",
                               "text": {"body": body}}
    if phone is not None:
        message["from"] = phone
    if bsuid is not None:
        message["from_user_id"] = bsuid
    return message


def _webhook(*messages: dict[str, Any], phone: str | None, bsuid: str | None,
             username: str | None = None, statuses: list[dict[str, Any]] | None = None
             ) -> dict[str, Any]:
    """One change as Meta posts it in 2026: a contact naming the sender however it can."""
    contact: dict[str, Any] = {"profile": {"name": "Jane"}}
    if username is not None:
        contact["profile"]["username"] = username
    if phone is not None:
        contact["wa_id"] = phone
    if bsuid is not None:
        contact["user_id"] = bsuid
    value: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": "15550001111",
                                          "phone_number_id": "1122334455667"}}
    if messages:
        value["contacts"] = [contact]
        value["messages"] = list(messages)
    if statuses is not None:
        value["statuses"] = statuses
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]}


async def _post(settings: Settings, body: dict[str, Any], times: int = 1) -> None:
    raw = encode(body)
    async with ingress(settings) as client:
        for _ in range(times):
            response = await client.post("/webhooks/whatsapp", content=raw,
                                         headers=signed_headers(raw, "test-app-secret"))
            assert response.status_code == 200


async def _project(settings: Settings, redis: Redis) -> None:
    async with consumers(settings, [Projector.from_settings(settings)]):
        await eventually(lambda: drained(redis, settings, "projector"))


async def _rows(pool: asyncpg.Pool, query: str, *args: object) -> list[asyncpg.Record]:
    async with pool.acquire() as connection:
        return await connection.fetch(query, *args)


@pytest.mark.parametrize("order", ["phone-first", "bsuid-first"])
async def test_a_phone_and_a_bsuid_linked_by_one_webhook_are_one_user_in_either_order(
    settings: Settings, redis: Redis, pool: asyncpg.Pool, order: str,
) -> None:
    alone = (dict(phone=PHONE, bsuid=None) if order == "phone-first"
             else dict(phone=None, bsuid=BSUID))
    other = (dict(phone=None, bsuid=BSUID) if order == "phone-first"
             else dict(phone=PHONE, bsuid=None))
    await _post(settings, _webhook(_text("wamid.1", "first", **alone), **alone))
    await _post(settings, _webhook(_text("wamid.2", "both", phone=PHONE, bsuid=BSUID),
                                   phone=PHONE, bsuid=BSUID, username="jane"))
    await _post(settings, _webhook(_text("wamid.3", "later", **other), **other))
    await _project(settings, redis)

    users = await _rows(pool, "SELECT id FROM users")
    messages = await _rows(pool, "SELECT user_id, text FROM messages ORDER BY created_at")
    identities = await _rows(
        pool, "SELECT user_id, kind, channel_user_key, username FROM identities ORDER BY kind")
    assert len(users) == 1
    assert [m["text"] for m in messages] == ["first", "both", "later"]
    assert {m["user_id"] for m in messages} == {users[0]["id"]}
    assert [(i["kind"], i["channel_user_key"]) for i in identities] == [
        ("bsuid", BSUID), ("phone", "+" + PHONE)]
    assert {i["user_id"] for i in identities} == {users[0]["id"]}
    assert identities[0]["username"] == "jane"
    # One user, one conversation: the contextual ZSET holds all three messages.
    keys = ConversationKeys(Keys(settings.key_prefix, 1))
    assert await redis.zcard(keys.tracking(0, str(users[0]["id"]))) == 3


# One event a page: each page's users and identities rows meet the ones replay remembers as
# written by the pages before (KnownRows), the username among them.
@pytest.mark.parametrize("batch_size", [5_000, 1])
async def test_replay_with_linked_identities_rebuilds_the_same_rows(
    settings: Settings, redis: Redis, pool: asyncpg.Pool, batch_size: int,
) -> None:
    await _post(settings, _webhook(_text("wamid.r1", "a", phone=None, bsuid=BSUID),
                                   phone=None, bsuid=BSUID, username="jane"))
    await _post(settings, _webhook(_text("wamid.r2", "b", phone=PHONE, bsuid=BSUID),
                                   phone=PHONE, bsuid=BSUID))
    await _post(settings, _webhook(_text("wamid.r3", "c", phone="14155550100", bsuid=None),
                                   phone="14155550100", bsuid=None))
    await _post(settings, _webhook(statuses=[
        {"id": "wamid.out1", "status": "read", "timestamp": 1700000002, "recipient_id": BSUID},
        {"id": "wamid.out1", "status": "delivered", "timestamp": "1700000001",
         "recipient_id": BSUID}], phone=None, bsuid=None))
    await _project(settings, redis)
    before = await checksums(settings.database_url)
    statuses_before = await _rows(pool, "SELECT * FROM delivery_statuses")

    report = await replay(settings.database_url, redis, Keys(settings.key_prefix, 1),
                          master=master_of(settings), batch_size=batch_size)

    assert report.swapped
    assert await checksums(settings.database_url) == before
    assert await _rows(pool, "SELECT * FROM delivery_statuses") == statuses_before
    assert before["identities"][0] == 3  # the BSUID and its phone, and another phone user


async def test_a_bsuid_only_user_is_stored_answered_by_recipient_and_summarised(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    settings = msgspec.structs.replace(reply_settings, debug=True)
    body = _webhook(*[_text(f"wamid.b{i}", f"burst {i}", phone=None, bsuid=BSUID)
                      for i in range(3)], phone=None, bsuid=BSUID, username="jane")
    await _post(settings, body)
    handlers = [replier(settings, pool, redis),
                Projector.from_settings(settings),
                build_summary_handler(settings, pool, redis)]
    async with consumers(settings, handlers):
        sends = await asyncio.to_thread(graph.wait_for_sends, 3, 15)
        await eventually(lambda: drained(redis, settings, "projector"))
        summaries = await eventually(lambda: _rows(pool, "SELECT user_id FROM summaries"))
    async with ingress(settings) as client:
        summary = await client.get("/debug/enqueue-summary", params={"user_id": BSUID})
        unknown = await client.get("/debug/enqueue-summary",
                                   params={"user_id": "US.99999999999999999999"})

    assert all(s["recipient"] == BSUID and "to" not in s for s in sends)
    # Three in one delivery: the first has two after it, so it is answered in context.
    by_context = {s.get("context", {}).get("message_id") for s in sends}
    assert "wamid.b0" in by_context and None in by_context
    rows = await _rows(pool, "SELECT m.text, m.reply_text, m.reply_outbound_id, i.kind "
                             "FROM messages m JOIN identities i ON i.id = m.identity_id")
    assert len(rows) == 3
    assert all(r["kind"] == "bsuid" and r["reply_text"] and r["reply_outbound_id"]
               for r in rows)
    assert summary.status_code == 200 and summary.json()["ok"] is True
    assert unknown.status_code == 404
    [requested] = await events_of_type(redis, settings, "SummaryRequested")
    [user] = await _rows(pool, "SELECT id FROM users")
    assert requested.user_id == str(user["id"])
    assert {s["user_id"] for s in summaries} == {user["id"]}  # type: ignore[attr-defined]


async def test_a_redelivered_bsuid_message_is_stored_and_answered_once(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    body = _webhook(_text("wamid.again", "once", phone=None, bsuid=BSUID), phone=None,
                    bsuid=BSUID)
    await _post(reply_settings, body, times=3)
    handlers = [replier(reply_settings, pool, redis),
                Projector.from_settings(reply_settings)]
    async with consumers(reply_settings, handlers):
        await asyncio.to_thread(graph.wait_for_sends, 1, 10)
        await eventually(lambda: drained(redis, reply_settings, "projector"))
        await eventually(lambda: drained(redis, reply_settings, "replier"))

    assert len(await events_of_type(redis, reply_settings, "MessageReceived")) == 1
    assert len(graph.sent()) == 1
    assert len(await _rows(pool, "SELECT id FROM messages")) == 1


async def test_an_unreadable_message_is_kept_counted_and_recovered_once_readable(
    settings: Settings, redis: Redis, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A sender in a shape this version does not know (a future "from": {"phone": ...}).
    odd = {"from": {"phone": PHONE}, "id": "wamid.future", "type": "text",
           "text": {"body": "from the future"}}
    body = _webhook(odd, _text("wamid.now", "readable", phone=PHONE, bsuid=None),
                    phone=None, bsuid=None)
    body["entry"][0]["changes"][0]["value"].pop("contacts")
    await _post(settings, body, times=2)
    await _project(settings, redis)
    status = await read_status(redis, Keys(settings.key_prefix, 1), settings.database_url)
    [kept] = await _rows(pool, "SELECT reason, raw_message FROM unreadable_messages")
    assert [r["text"] for r in await _rows(pool, "SELECT text FROM messages")] == ["readable"]
    assert kept["reason"] == "no usable sender"
    assert json.loads(kept["raw_message"]) == odd
    assert status.unreadable_messages == 1

    # A later version reads the new shape of "from".
    original = parser.as_phone
    monkeypatch.setattr(parser, "as_phone", lambda value: original(
        value.get("phone") if isinstance(value, dict) else value))
    event_log = EventLog.from_settings(settings, redis)
    links = IdentityLinks(redis, settings.key_prefix)
    async with pool.acquire() as connection:
        first = await recover_unreadable(connection, links, event_log)
        again = await recover_unreadable(connection, links, event_log)
    await _project(settings, redis)

    assert (first.examined, first.recovered) == (1, 1)
    assert again.recovered == 0  # the same message is never appended twice
    texts = await _rows(pool, "SELECT user_id, text FROM messages ORDER BY text")
    assert [r["text"] for r in texts] == ["from the future", "readable"]
    assert len({r["user_id"] for r in texts}) == 1
    status = await read_status(redis, Keys(settings.key_prefix, 1), settings.database_url)
    assert status.unreadable_messages == 0
    [recovered] = [e for e in await events_of_type(redis, settings, "MessageReceived")
                   if e.recovered_from]
    assert recovered.source_message_id == "wamid.future"


async def test_statuses_for_bsuid_recipients_update_the_reply_and_failures_show(
    settings: Settings, redis: Redis, pool: asyncpg.Pool,
) -> None:
    statuses = [
        {"id": "wamid.ok", "status": "sent", "timestamp": "1700000001", "recipient_id": BSUID,
         "recipient_user_id": BSUID},
        {"id": "wamid.ok", "status": "delivered", "timestamp": "1700000002",
         "recipient_id": BSUID, "recipient_user_id": BSUID},
        {"id": "wamid.ok", "status": "read", "timestamp": 1700000003, "recipient_id": BSUID},
        {"id": "wamid.late", "status": "failed", "timestamp": "1700000004",
         "recipient_id": BSUID, "errors": [{"code": 131047, "title": "Re-engagement message"}]},
        {"id": "wamid.gone", "status": "failed", "timestamp": "1700000005",
         "recipient_id": "+" + PHONE, "errors": [{"code": 131026, "title": "Undeliverable"}]},
    ]
    await _post(settings, _webhook(statuses=statuses, phone=None, bsuid=None), times=2)
    await _project(settings, redis)

    rows = {r["outbound_message_id"]: r for r in await _rows(
        pool, "SELECT * FROM delivery_statuses")}
    assert rows["wamid.ok"]["status"] == "read"
    assert rows["wamid.ok"]["recipient_bsuid"] == BSUID
    assert (rows["wamid.late"]["status"], rows["wamid.late"]["error_code"]) == ("failed", 131047)
    assert rows["wamid.gone"]["error_code"] == 131026
    status = await read_status(redis, Keys(settings.key_prefix, 1), settings.database_url)
    assert status.failed_deliveries == {"131026": 1, "131047": 1}


async def test_ready_says_when_webhooks_are_accepted_unsigned(settings: Settings) -> None:
    unsigned = msgspec.structs.replace(
        settings, whatsapp_app_secret=None, whatsapp_phone_number_id="1122334455667",
        whatsapp_permanent_token="token", allow_unsigned_webhooks=True)
    async with ingress(unsigned) as client:
        ready = (await client.get("/ready")).json()
    async with ingress(settings) as client:
        signed = (await client.get("/ready")).json()
    assert ready["signed"] is False
    assert signed["signed"] is True
