"""Messages of known senders: resolved and appended in one script, checked against Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.ingress.parse_webhook import InboundText, events_from_texts
from app.platform.eventlog.append import RECENT_KEPT, EventLog
from app.platform.eventlog.content_crypto import open_event
from app.platform.identities import IdentityLinks, Resolution, Sender, first_user_id
from app.platform.sender_appends import SenderAppends
from app.platform.settings import Settings
from schema.events import MessageReceived
from tests.integration.consumer_helpers import events_of_type

PHONE = "+919130099484"
BSUID = "US.13491208655302741918"


@pytest.fixture
async def appends(settings: Settings, redis: Redis) -> AsyncIterator[SenderAppends]:
    event_log = EventLog.from_settings(settings, redis)
    yield SenderAppends(IdentityLinks(redis, settings.key_prefix), event_log)
    await event_log.aclose()


def _text(sender: Sender, wamid: str, body: str) -> InboundText:
    return InboundText(
        sender=sender,
        wamid=wamid,
        text=body,
        client_timestamp=None,
        raw={"id": wamid, "type": "text", "text": {"body": body}},
    )


async def _append(appends: SenderAppends, *texts: InboundText) -> list[str | None]:
    def build(resolutions: list[Resolution]) -> list[MessageReceived]:
        return events_from_texts(list(texts), 1_700_000_000_000, resolutions)

    return await appends.append_texts([t.sender for t in texts], build)


async def _received(
    redis: Redis, settings: Settings, appends: SenderAppends
) -> list[MessageReceived]:
    events = await events_of_type(redis, settings, "MessageReceived")
    content = appends.event_log.content
    assert content is not None
    ring = await content.keyring(events)
    return [open_event(e, ring) for e in events]  # type: ignore[misc]


async def test_a_known_senders_next_message_needs_no_separate_resolution(
    appends: SenderAppends, redis: Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = Sender(phone=PHONE, bsuid=BSUID)
    await _append(appends, _text(sender, "wamid.1", "first"))

    async def no_separate_call(_: object) -> None:
        raise AssertionError("resolved by a separate script call")

    monkeypatch.setattr(appends.identity_links, "resolve", no_separate_call)
    [entry_id] = await _append(appends, _text(sender, "wamid.2", "second"))

    received = await _received(redis, settings, appends)
    assert entry_id is not None
    assert [e.text for e in received] == ["first", "second"]
    assert {e.user_id for e in received} == {first_user_id(sender)}
    assert [(e.phone, e.bsuid) for e in received] == [(PHONE, BSUID)] * 2


async def test_a_redelivered_message_of_a_known_sender_is_appended_once(
    appends: SenderAppends, redis: Redis, settings: Settings
) -> None:
    sender = Sender(phone=PHONE, bsuid=None)
    await _append(appends, _text(sender, "wamid.0", "earlier"))

    first = await _append(appends, _text(sender, "wamid.1", "hello"))
    again = await _append(appends, _text(sender, "wamid.1", "hello"))

    assert first[0] is not None and again == [None]
    assert [e.text for e in await _received(redis, settings, appends)] == ["earlier", "hello"]


async def test_a_wrong_guess_appends_once_for_the_user_redis_decides(
    appends: SenderAppends, redis: Redis, settings: Settings
) -> None:
    sender = Sender(phone=None, bsuid=BSUID)
    await _append(appends, _text(sender, "wamid.1", "first"))
    # Meanwhile the link changed under this process (forgotten, then linked by another one).
    link = appends.identity_links.keys.bsuid(BSUID)
    await redis.set(link, "someone-else")

    [entry_id] = await _append(appends, _text(sender, "wamid.2", "second"))
    [later] = await _append(appends, _text(sender, "wamid.3", "third"))

    received = await _received(redis, settings, appends)
    assert entry_id is not None and later is not None
    assert [(e.text, e.user_id) for e in received] == [
        ("first", first_user_id(sender)),
        ("second", "someone-else"),
        ("third", "someone-else"),
    ]
    assert appends.identity_links.guess(sender) == Resolution("someone-else", None, BSUID)


async def test_a_phone_linked_to_another_user_is_left_out_on_the_one_script_path(
    appends: SenderAppends, redis: Redis, settings: Settings
) -> None:
    owner = Sender(phone=PHONE, bsuid=None)
    await _append(appends, _text(owner, "wamid.1", "from the phone's user"))
    other = Sender(phone=PHONE, bsuid=BSUID)
    await redis.set(appends.identity_links.keys.bsuid(BSUID), "bsuid-user")

    await _append(appends, _text(other, "wamid.2", "first"))
    await _append(appends, _text(other, "wamid.3", "second"))  # now a known sender

    received = await _received(redis, settings, appends)
    assert [(e.text, e.user_id, e.phone) for e in received][1:] == [
        ("first", "bsuid-user", None),
        ("second", "bsuid-user", None),
    ]


async def test_the_recent_list_holds_every_id_up_to_its_size_then_the_latest_ones(
    appends: SenderAppends, redis: Redis, settings: Settings
) -> None:
    sender = Sender(phone=PHONE, bsuid=None)
    await _append(appends, _text(sender, "wamid.0", "hello"))
    user = first_user_id(sender)
    recent = appends.event_log.conversation.recent(appends.event_log.keys.partition_of(user), user)

    async def ids_listed() -> list[str]:
        return [value.decode() for value in await redis.lrange(recent, 0, -1)]

    # Known sender: the one-script path, several messages of the user in one call.
    await _append(appends, *(_text(sender, f"wamid.{i}", f"text {i}") for i in range(1, 5)))
    few = [e.message_id for e in await _received(redis, settings, appends)]
    assert await ids_listed() == few
    assert 0 < await redis.ttl(recent) <= settings.context_ttl_seconds

    await _append(appends, *(_text(sender, f"wamid.{i}", f"text {i}") for i in range(5, 30)))
    everything = [e.message_id for e in await _received(redis, settings, appends)]
    assert len(everything) == 30
    assert await ids_listed() == everything[-RECENT_KEPT:]


async def test_a_content_key_destroyed_before_a_call_reseals_every_message_of_its_user(
    appends: SenderAppends, redis: Redis, settings: Settings
) -> None:
    sender = Sender(phone=PHONE, bsuid=None)
    await _append(appends, _text(sender, "wamid.0", "before"))
    content = appends.event_log.content
    assert content is not None
    user = first_user_id(sender)
    old_key = content.cached_for_writing(user)
    await redis.delete(content.key_hash(user))  # as `mecove forget` destroys it

    entry_ids = await _append(appends, _text(sender, "wamid.1", "one"),
                              _text(sender, "wamid.2", "two"))

    assert None not in entry_ids
    received = await _received(redis, settings, appends)
    assert [e.text for e in received][-2:] == ["one", "two"]
    new_key = content.cached_for_writing(user)
    assert old_key is not None and new_key is not None and new_key.key_id != old_key.key_id


async def test_the_tracking_set_keeps_the_messages_of_the_window_before_the_latest(
    appends: SenderAppends, redis: Redis, settings: Settings
) -> None:
    sender = Sender(phone=PHONE, bsuid=None)
    window = settings.tracking_window_ms
    start = 1_700_000_000_000

    async def append_at(received_at: int, wamid: str) -> None:
        text = _text(sender, wamid, wamid)

        def build(resolutions: list[Resolution]) -> list[MessageReceived]:
            return events_from_texts([text], received_at, resolutions)

        await appends.append_texts([sender], build)

    await append_at(start, "wamid.0")
    user = first_user_id(sender)
    log = appends.event_log
    tracking = log.conversation.tracking(log.keys.partition_of(user), user)

    async def tracked() -> list[float]:
        return [score for _, score in await redis.zrange(tracking, 0, -1, withscores=True)]

    await append_at(start + window, "wamid.1")  # known sender: the one-script path
    assert await tracked() == [start, start + window]
    await append_at(start + window + 1, "wamid.2")
    assert await tracked() == [start + window, start + window + 1]
    assert 0 < await redis.pttl(tracking) <= 2 * window
