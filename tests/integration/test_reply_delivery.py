"""Replies reach the user exactly once, at the pace Meta allows, while "typing…" shows."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import msgspec
from redis.asyncio import Redis

from app.devtools.ports import free_port
from app.devtools.webhook_bodies import text_message
from app.operations.dead_letters import retry_dead_letter
from app.platform.eventlog.keys import Keys
from app.platform.settings import Settings
from tests.fakes.graph_api import FakeGraphApi
from tests.integration.consumer_helpers import (
    GRAPH_TOKEN,
    dead_letters,
    events_of_type,
    replier,
)
from tests.integration.consumer_helpers import post_messages as _post
from tests.service import consumers, eventually


def _with(settings: Settings, **changes: object) -> Settings:
    return msgspec.structs.replace(settings, **changes)


async def test_a_late_answer_is_in_doubt_sent_once_and_an_operator_retry_sends_it_once(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    settings = _with(reply_settings, graph_timeout_ms=300)
    graph.answer_late(1.0)
    await _post(settings, text_message("15550013001", "slow meta", wamid="wamid.late"))
    async with consumers(settings, [replier(settings, pool, redis)]):
        async def dead() -> list:
            return await dead_letters(redis, settings)
        [letter] = await eventually(dead)  # type: ignore[misc]
        await asyncio.to_thread(graph.wait_for_sends, 1, 5)
        await asyncio.sleep(1.5)  # time for a (wrong) automatic resend
        assert len(graph.sent()) == 1
        assert b"ReplyInDoubt" in letter[b"error"] and b"ReadTimeout" in letter[b"error"]
        assert await events_of_type(redis, settings, "ReplyFailed") == []

        keys = Keys.from_settings(settings)
        [(dlq_id, _)] = await redis.xrange(keys.dead_letters(0))
        assert await retry_dead_letter(redis, keys, dlq_id.decode())
        await asyncio.to_thread(graph.wait_for_sends, 2, 10)
        await asyncio.sleep(0.5)
    assert len(graph.sent()) == 2  # the late one, and the one the operator chose to send
    assert len(await events_of_type(redis, settings, "ReplySent")) == 1


async def test_a_connection_dropped_after_the_request_is_in_doubt_and_not_resent(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    graph.drop_after_reading()
    await _post(reply_settings, text_message("15550013002", "cut", wamid="wamid.cut"))
    async with consumers(reply_settings, [replier(reply_settings, pool, redis)]):
        async def dead() -> list:
            return await dead_letters(redis, reply_settings)
        [letter] = await eventually(dead)  # type: ignore[misc]
        await asyncio.sleep(1.5)
    assert b"ReplyInDoubt" in letter[b"error"]
    assert len(graph.requests()) == 1 and graph.sent() == []


async def test_a_refused_connection_is_retried_and_the_reply_sent_once(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool,
) -> None:
    port = free_port()  # nothing listens there until the fake starts
    settings = _with(reply_settings, whatsapp_api_base_url=f"http://127.0.0.1:{port}")
    await _post(settings, text_message("15550013003", "anyone?", wamid="wamid.refused"))
    late_graph = FakeGraphApi(port=port, expected_token=GRAPH_TOKEN)
    async with consumers(settings, [replier(settings, pool, redis)]):
        async def retry_scheduled() -> bool:
            keys = Keys.from_settings(settings)
            return bool(await redis.hlen(keys.last_error(0, "replier")))
        await eventually(retry_scheduled)
        with late_graph:
            await asyncio.to_thread(late_graph.wait_for_sends, 1, 10)
            await asyncio.sleep(0.5)
            assert len(late_graph.sent()) == 1
    assert await dead_letters(redis, settings) == []
    [sent] = await events_of_type(redis, settings, "ReplySent")
    assert sent.outbound_message_id


async def test_a_burst_of_eight_under_a_pair_limit_arrives_once_each_in_order(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    # Our limiter is looser than the fake's "3 per 6 s", so Meta's 131056 path is taken too.
    settings = _with(reply_settings, graph_pair_interval_ms=2_000, graph_pair_burst=3,
                     retry_max_attempts=3)
    graph.pair_limit = (3, 6.0)
    texts = [f"burst {i}" for i in range(8)]

    async with consumers(settings, [replier(settings, pool, redis)]):
        started = time.time()
        for i, text in enumerate(texts):
            await _post(settings, text_message("15550013004", text, wamid=f"wamid.burst{i}"))
        await asyncio.sleep(1.0)
        other_posted = time.time()
        await _post(settings, text_message("15550013005", "me too", wamid="wamid.other"))
        await asyncio.to_thread(graph.wait_for_sends, 9, 60)
        await asyncio.sleep(0.5)
    confirmed = graph.confirmed()
    burst = [r for r in confirmed if r.body["to"] == "+15550013004"]
    [other] = [r for r in confirmed if r.body["to"] == "+15550013005"]
    timeline = [round(r.received_at - started, 2) for r in burst]
    print("burst timeline (s after the first post):", timeline,
          "| 131056 answers:", sum(r.status == 429 for r in graph.requests()),
          "| other user answered after", round(other.received_at - other_posted, 2), "s")
    replies = {e.message_id: e for e in await events_of_type(redis, settings, "ReplySent")}
    assert len(burst) == 8 and len(replies) == 9
    # In order: each reply answers the message at its position (the prompt ends with it).
    received = {e.message_id: e.source_message_id
                for e in await events_of_type(redis, settings, "MessageReceived")}
    sent_order = sorted(replies.values(), key=lambda e: e.replied_at)
    burst_order = [received[e.message_id] for e in sent_order
                   if received[e.message_id].startswith("wamid.burst")]
    assert burst_order == [f"wamid.burst{i}" for i in range(8)]
    assert await dead_letters(redis, settings) == []
    assert timeline[-1] < 60
    # Never more than the pair limit within any 6 s reached the fake.
    times = [r.received_at for r in burst]
    assert all(times[i + 3] - times[i] > 6.0 for i in range(len(times) - 3))
    assert other.received_at - other_posted < 3.0


async def test_two_repliers_share_one_pair_limiter(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    first = _with(reply_settings, graph_pair_interval_ms=1_500, graph_pair_burst=2,
                  consumer_name="replier-a")
    second = _with(first, consumer_name="replier-b")
    for i in range(6):
        await _post(first, text_message("15550013006", f"two {i}", wamid=f"wamid.two{i}"))
    async with consumers(first, [replier(first, pool, redis)]), \
            consumers(second, [replier(second, pool, redis)]):
        await asyncio.to_thread(graph.wait_for_sends, 6, 30)
        await asyncio.sleep(0.5)
    times = sorted(r.received_at for r in graph.confirmed())
    assert len(times) == 6
    # A burst of 2, then one per 1.5 s: no 3 sends within 1.5 s, whichever process sent them.
    assert all(times[i + 2] - times[i] >= 1.4 for i in range(len(times) - 2))
    assert all(r.status == 200 for r in graph.requests())  # the limiter kept Meta happy
    assert await dead_letters(redis, first) == []


async def test_a_reply_that_waits_past_the_give_up_time_fails_with_the_reason(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    settings = _with(reply_settings, graph_pair_interval_ms=300, graph_pacing_give_up_ms=1_500)
    graph.fail_always(429, 131056)
    await _post(settings, text_message("15550013007", "never", wamid="wamid.never"))
    async with consumers(settings, [replier(settings, pool, redis)]):
        async def failed() -> list:
            return await events_of_type(redis, settings, "ReplyFailed")
        [failure] = await eventually(failed)  # type: ignore[misc]
    assert "gave up after waiting" in failure.error and "131056" in failure.error
    assert len(graph.requests()) >= 3  # more tries than the attempt budget: throttling is free
    [letter] = await dead_letters(redis, settings)
    assert b"PacingGaveUp" in letter[b"error"]


async def test_a_throughput_limit_slows_the_sender_and_every_reply_arrives(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    graph.throughput_limit = (3, 1.0)
    users = [f"1555001310{i}" for i in range(8)]
    await _post(reply_settings, *[text_message(u, "hi", wamid=f"wamid.tp{i}")
                                  for i, u in enumerate(users)])
    async with consumers(reply_settings, [replier(reply_settings, pool, redis)]):
        await asyncio.to_thread(graph.wait_for_sends, 8, 30)
        await asyncio.sleep(0.5)
    assert sorted(r.body["to"] for r in graph.confirmed()) == sorted(f"+{u}" for u in users)
    assert any(r.status == 429 for r in graph.requests())
    assert await dead_letters(redis, reply_settings) == []


async def test_typing_is_shown_once_per_message_and_never_counted_as_a_reply(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    graph.script([500])  # the first send fails once: the retry must not type again
    await _post(reply_settings, text_message("15550013201", "one", wamid="wamid.t1"),
                text_message("15550013202", "two", wamid="wamid.t2"))
    async with consumers(reply_settings, [replier(reply_settings, pool, redis)]):
        await asyncio.to_thread(graph.wait_for_sends, 2, 15)
        await asyncio.sleep(0.3)
    marks = graph.read_marks()
    assert sorted(m["message_id"] for m in marks) == ["wamid.t1", "wamid.t2"]
    assert all(m["typing_indicator"] == {"type": "text"} for m in marks)
    assert len(graph.sent()) == 2
    assert len(await events_of_type(redis, reply_settings, "ReplySent")) == 2


async def test_a_failing_typing_indicator_changes_nothing_about_the_reply(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    graph.typing_status = 500
    await _post(reply_settings, text_message("15550013203", "hey", wamid="wamid.t500"))
    async with consumers(reply_settings, [replier(reply_settings, pool, redis)]):
        await asyncio.to_thread(graph.wait_for_sends, 1, 10)
        await asyncio.sleep(0.3)
    assert [r.status for r in graph.read_requests()] == [500]
    assert len(graph.sent()) == 1
    [sent] = await events_of_type(redis, reply_settings, "ReplySent")
    assert sent.outbound_message_id and await dead_letters(redis, reply_settings) == []


async def test_with_the_typing_indicator_off_no_read_call_is_made(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    settings = _with(reply_settings, typing_indicator=False)
    await _post(settings, text_message("15550013204", "quiet", wamid="wamid.quiet"))
    async with consumers(settings, [replier(settings, pool, redis)]):
        await asyncio.to_thread(graph.wait_for_sends, 1, 10)
    assert graph.read_requests() == []
