"""The replier: LLM text to the Graph API, contextual by the reply-mode rule, at most one send."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
from redis.asyncio import Redis

from app.devtools.webhook_bodies import text_message
from app.platform.eventlog.content_crypto import sealed_key_id
from app.platform.eventlog.keys import Keys
from app.platform.settings import Settings
from projections.projector import Projector
from tests.fakes.graph_api import FakeGraphApi
from tests.fakes.groq_api import FakeGroqApi
from tests.integration.consumer_helpers import (
    dead_letters,
    events_of_type,
    replier,
)
from tests.integration.consumer_helpers import (
    post_messages as _post,
)
from tests.service import consumers, eventually


async def test_happy_path_sends_the_llm_text_and_projects_the_reply(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
    groq: FakeGroqApi,
) -> None:
    groq.reply_text = "Hi! How can I help?"
    await _post(reply_settings, text_message("919130099484", "hello there", wamid="wamid.h1"))
    handlers = [replier(reply_settings, pool, redis),
                Projector.from_settings(reply_settings)]
    async with consumers(reply_settings, handlers):
        sends = await asyncio.to_thread(graph.wait_for_sends, 1, 10)

        async def projected() -> object:
            async with pool.acquire() as connection:
                return await connection.fetchrow(
                    "SELECT reply_text, replied_at FROM messages WHERE replied_at IS NOT NULL")
        row = await eventually(projected)
    assert sends[0]["to"] == "+919130099484"
    assert sends[0]["text"] == {"body": "Hi! How can I help?"}
    assert sends[0]["type"] == "text" and sends[0]["messaging_product"] == "whatsapp"
    assert "context" not in sends[0]
    assert row["reply_text"] == "Hi! How can I help?"  # type: ignore[index]
    request = groq.last_request()
    assert request["model"] == "openai/gpt-oss-20b"
    assert request["messages"][-1]["content"].endswith("User: hello there")
    [sent] = await events_of_type(redis, reply_settings, "ReplySent")
    assert sent.fallback_used is False and sent.model == "openai/gpt-oss-20b"
    assert sent.outbound_message_id and sent.outbound_message_id.startswith("wamid.")


async def test_three_messages_in_one_delivery_first_reply_is_contextual_last_is_not(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    messages = [text_message("15550003001", f"part {i}", wamid=f"wamid.three{i}")
                for i in range(3)]
    await _post(reply_settings, *messages)
    async with consumers(reply_settings, [replier(reply_settings, pool, redis)]):
        await asyncio.to_thread(graph.wait_for_sends, 3, 10)
    sends = graph.sent()
    by_quoted = {s.get("context", {}).get("message_id") for s in sends}
    assert {"wamid.three0"} <= by_quoted  # the first had two after it: quoted
    replies = {e.message_id: e for e in await events_of_type(redis, reply_settings, "ReplySent")}
    ordered = sorted(replies.values(), key=lambda e: e.replied_at)
    assert len(ordered) == 3
    first, last = ordered[0], ordered[-1]
    assert first.contextual is True
    assert last.contextual is False
    assert sum(1 for s in sends if "context" not in s) >= 1


async def test_with_the_projector_stopped_the_third_prompt_shows_the_first_two_and_replies(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
    groq: FakeGroqApi,
) -> None:
    def answer(body: dict) -> str:
        last_line = body["messages"][-1]["content"].splitlines()[-1]
        return "re: " + last_line.removeprefix("User: ")

    groq.responder = answer
    messages = [text_message("15550003002", name, wamid=f"wamid.ctx{i}")
                for i, name in enumerate(["one", "two", "three"])]
    await _post(reply_settings, *messages)
    async with consumers(reply_settings, [replier(reply_settings, pool, redis)]):
        await asyncio.to_thread(graph.wait_for_sends, 3, 10)
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM messages") == 0  # no projector
    prompts = [r["messages"][-1]["content"] for r in groq.requests()]
    assert prompts[-1] == "User: one\nBot: re: one\nUser: two\nBot: re: two\nUser: three"


async def test_groq_down_replies_noted_as_a_fallback(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
    groq: FakeGroqApi,
) -> None:
    groq.fail_always(500)
    await _post(reply_settings, text_message("15550003003", "anyone?", wamid="wamid.llmdown"))
    async with consumers(reply_settings, [replier(reply_settings, pool, redis)]):
        sends = await asyncio.to_thread(graph.wait_for_sends, 1, 10)
    assert sends[0]["text"]["body"] == "Noted."
    [sent] = await events_of_type(redis, reply_settings, "ReplySent")
    assert sent.fallback_used is True and sent.model is None


async def test_graph_429_twice_then_200_gives_one_send_after_three_attempts(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    graph.script([429, 429, 200])
    await _post(reply_settings, text_message("15550003004", "hello", wamid="wamid.429"))
    async with consumers(reply_settings, [replier(reply_settings, pool, redis)]):
        await asyncio.to_thread(graph.wait_for_sends, 1, 15)
        await asyncio.sleep(0.5)
    assert [r.status for r in graph.requests()] == [429, 429, 200]
    assert len(graph.sent()) == 1
    assert len(await events_of_type(redis, reply_settings, "ReplySent")) == 1
    assert await dead_letters(redis, reply_settings) == []


async def test_graph_131047_fails_at_once_without_retry_and_dead_letters(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    graph.fail_always(400, 131047)
    await _post(reply_settings, text_message("15550003005", "late", wamid="wamid.window"))
    async with consumers(reply_settings, [replier(reply_settings, pool, redis)]):
        async def failed() -> list:
            return await events_of_type(redis, reply_settings, "ReplyFailed")
        [failure] = await eventually(failed)  # type: ignore[misc]
        await asyncio.sleep(0.5)
    assert len(graph.requests()) == 1
    assert failure.retryable is False and failure.attempts == 1
    assert "131047" in failure.error
    [dead] = await dead_letters(redis, reply_settings)
    assert dead[b"group"] == b"replier" and b"131047" in dead[b"error"]


async def test_graph_always_500_makes_exactly_three_attempts_then_dead_letters(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    graph.fail_always(500)
    await _post(reply_settings, text_message("15550003006", "hello?", wamid="wamid.500"))
    async with consumers(reply_settings, [replier(reply_settings, pool, redis)]):
        async def failed() -> list:
            return await events_of_type(redis, reply_settings, "ReplyFailed")
        [failure] = await eventually(failed)  # type: ignore[misc]
        await asyncio.sleep(0.6)  # time for a (wrong) fourth attempt
    assert len(graph.requests()) == 3
    assert graph.sent() == []
    assert failure.retryable is True and failure.attempts == 3
    [dead] = await dead_letters(redis, reply_settings)
    assert dead[b"attempts"] == b"3"
    keys = Keys(reply_settings.key_prefix, 1)
    assert (await redis.xpending(keys.stream(0), "replier"))["pending"] == 0


async def test_an_event_redelivered_after_reply_sent_is_not_sent_again(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    await _post(reply_settings, text_message("15550003007", "once", wamid="wamid.once"))
    keys = Keys(reply_settings.key_prefix, 1)
    async with consumers(reply_settings, [replier(reply_settings, pool, redis)]):
        await asyncio.to_thread(graph.wait_for_sends, 1, 10)
        # The same event appears again in the log (a replayed or re-injected entry).
        [(_, fields)] = await redis.xrange(keys.stream(0), count=1)
        await redis.xadd(keys.stream(0), fields)

        async def acked() -> bool:
            return (await redis.xpending(keys.stream(0), "replier"))["pending"] == 0 and \
                (await redis.xinfo_groups(keys.stream(0)))[0]["last-delivered-id"] == \
                (await redis.xrevrange(keys.stream(0), count=1))[0][0]
        await eventually(acked)
    assert len(graph.sent()) == 1
    assert len(await events_of_type(redis, reply_settings, "ReplySent")) == 1


async def test_an_undecodable_event_is_dead_lettered_while_the_group_keeps_flowing(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    keys = Keys(reply_settings.key_prefix, 1)
    await redis.xadd(keys.stream(0), {"type": "MessageReceived", "v": "99", "id": "x",
                                      "at": "0", "body": "{}"})
    await redis.xadd(keys.stream(0), {"type": "Garbage", "v": "1", "id": "y", "at": "0",
                                      "body": "not json"})
    await _post(reply_settings, text_message("15550003008", "still here", wamid="wamid.after"))
    async with consumers(reply_settings, [replier(reply_settings, pool, redis)]):
        await asyncio.to_thread(graph.wait_for_sends, 1, 10)
    dead = await dead_letters(redis, reply_settings)
    assert len(dead) == 2
    assert b"schema version 99" in dead[0][b"error"]
    assert b"does not decode" in dead[1][b"error"]


async def test_without_whatsapp_credentials_replies_are_recorded_in_dry_run(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
) -> None:
    dry = msgspec.structs.replace(reply_settings, whatsapp_permanent_token=None)
    await _post(dry, text_message("15550003009", "dry", wamid="wamid.dry"))
    async with consumers(dry, [replier(dry, pool, redis)]):
        async def recorded() -> list:
            return await events_of_type(redis, dry, "ReplySent")
        [sent] = await eventually(recorded)  # type: ignore[misc]
    assert sent.dry_run is True and sent.outbound_message_id is None
    assert graph.requests() == []


class _CountingPipelines:
    """A Redis client that counts the pipelines opened through it (and is the client else)."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.opened = 0

    def pipeline(self, *args: object, **kwargs: object) -> object:
        self.opened += 1
        return self.client.pipeline(*args, **kwargs)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self.client, name)


async def test_a_new_users_key_comes_with_the_turns_and_seals_the_reply_from_the_same_cache(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi,
    groq: FakeGroqApi,
) -> None:
    await _post(reply_settings, text_message("15550003011", "sealed hello", wamid="wamid.key1"))
    handler = replier(reply_settings, pool, redis)
    content = handler.store.content  # type: ignore[attr-defined]
    assert content is not None and content is handler.outcomes.content  # type: ignore[attr-defined]
    counting = _CountingPipelines(content.redis)
    content.redis = counting  # the key store's own round trips (``keyring`` asking Redis)
    async with consumers(reply_settings, [handler]):
        await asyncio.to_thread(graph.wait_for_sends, 1, 10)
        await eventually(lambda: events_of_type(redis, reply_settings, "ReplySent"))
    assert counting.opened == 0  # read with the turns; the reply sealed from the same cache
    assert groq.last_request()["messages"][-1]["content"].endswith("User: sealed hello")
    [sent] = await events_of_type(redis, reply_settings, "ReplySent")
    [received] = await events_of_type(redis, reply_settings, "MessageReceived")
    assert sealed_key_id(sent.reply_text) == sealed_key_id(received.text) is not None
