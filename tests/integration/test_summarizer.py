"""The summarizer: coalesced bursts, unchanged input skipped, 7-day range, LLM or fallback."""

from __future__ import annotations

import time

import asyncpg
import msgspec
from redis.asyncio import Redis

from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message
from app.ingress.parse_webhook import events_from_texts, parse_webhook
from app.platform.eventlog.append import EventLog
from app.platform.eventlog.keys import Keys
from app.platform.runtime.handler import GroupHandler
from app.platform.settings import Settings
from consumers.summarizer.summary_handler import SummaryHandler, build_summary_handler
from projections.projector import Projector
from schema.events import SummaryRequested
from tests.fakes.groq_api import FakeGroqApi
from tests.integration.consumer_helpers import drained
from tests.service import consumers, eventually, ingress

DAY_MS = 24 * 3600 * 1000


class Clock:
    """An injected clock: rules fire when the test moves time, never by sleeping."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


def _summarizer(settings: Settings, pool: asyncpg.Pool, redis: Redis, clock: Clock
                ) -> SummaryHandler:
    return build_summary_handler(settings, pool, redis, clock_ms=clock)


async def _append(redis: Redis, settings: Settings, sender: str, texts: list[str],
                  received_at_ms: int) -> None:
    log = EventLog(redis, Keys(settings.key_prefix, 1))
    messages = [text_message(sender, t) for t in texts]
    parsed = parse_webhook(encode(delivery(*messages)))
    await log.append_messages(events_from_texts(parsed.texts, received_at_ms))


async def _summaries(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    async with pool.acquire() as connection:
        return await connection.fetch("SELECT * FROM summaries ORDER BY created_at, id")


def _projector_and_summarizer(settings: Settings, pool: asyncpg.Pool, redis: Redis,
                              clock: Clock) -> list[GroupHandler]:
    """The summarizer on ``clock`` and the projector that writes the users and its rows."""
    return [Projector.from_settings(settings),
            _summarizer(settings, pool, redis, clock)]


async def _first_summaries(settings: Settings, pool: asyncpg.Pool, redis: Redis,
                           clock: Clock) -> list[asyncpg.Record]:
    """Run the projector and the summarizer until a summary row is written; the rows."""
    async with consumers(settings, _projector_and_summarizer(settings, pool, redis, clock)):
        await eventually(lambda: _summaries(pool))
    return await _summaries(pool)


def _with_llm(settings: Settings, groq: FakeGroqApi) -> Settings:
    """``settings`` with a Groq key, pointed at the fake Groq."""
    return msgspec.structs.replace(settings, groq_api_key="gsk_test_key_0123456789",
                                   groq_base_url=groq.base_url)


async def test_a_burst_of_five_messages_ends_with_a_summary_covering_all_five(
    settings: Settings, redis: Redis, pool: asyncpg.Pool
) -> None:
    clock = Clock(time.time_ns() // 1_000_000 + 60_000)
    async with ingress(settings) as client:
        for i in range(5):
            raw = encode(delivery(text_message("15550005001", f"burst {i}")))
            response = await client.post("/webhooks/whatsapp", content=raw,
                                         headers=signed_headers(raw, "test-app-secret"))
            assert response.status_code == 200
    async with consumers(settings, _projector_and_summarizer(settings, pool, redis, clock)):
        await eventually(lambda: drained(redis, settings, "summarizer"))
        await eventually(lambda: drained(redis, settings, "projector"))  # SummaryCreated in
        first = await _summaries(pool)
        assert len(first) == 1  # the rest of the burst was folded into the user's window
        clock.advance(settings.summary_window_ms + 1)  # the window ends: deferred trigger fires

        async def covers_five() -> bool:
            rows = await _summaries(pool)
            return bool(rows) and rows[-1]["input_messages_count"] == 5
        await eventually(covers_five)
        await eventually(lambda: drained(redis, settings, "summarizer"))
    rows = await _summaries(pool)
    assert len(rows) <= 2
    assert rows[-1]["input_messages_count"] == 5


async def test_a_trigger_with_no_new_messages_adds_no_row(
    settings: Settings, redis: Redis, pool: asyncpg.Pool
) -> None:
    clock = Clock(time.time_ns() // 1_000_000)
    await _append(redis, settings, "15550005002", ["a", "b"], clock() - 1000)
    async with consumers(settings, _projector_and_summarizer(settings, pool, redis, clock)):
        await eventually(lambda: _summaries(pool))
        user_id = str((await _summaries(pool))[0]["user_id"])
        clock.advance(settings.summary_window_ms + 1)
        log = EventLog(redis, Keys(settings.key_prefix, 1))
        await log.append(SummaryRequested(event_id="5d0c55a4-33a4-4c11-8f0e-3ab9e0a4e001",
                                          occurred_at=clock(), user_id=user_id),
                         user_id=user_id)
        await eventually(lambda: drained(redis, settings, "summarizer"))
        await eventually(lambda: drained(redis, settings, "projector"))
    assert len(await _summaries(pool)) == 1


async def test_messages_older_than_seven_days_are_excluded_and_the_range_is_exact(
    settings: Settings, redis: Redis, pool: asyncpg.Pool
) -> None:
    now = time.time_ns() // 1_000_000
    clock = Clock(now)
    await _append(redis, settings, "15550005003", ["too old"], now - 8 * DAY_MS)
    await _append(redis, settings, "15550005003", ["yesterday"], now - DAY_MS)
    await _append(redis, settings, "15550005003", ["just now"], now - 1000)
    [summary] = await _first_summaries(settings, pool, redis, clock)
    assert summary["input_messages_count"] == 2  # "too old" is out of the range
    assert int(summary["range_end"].timestamp() * 1000) == now
    assert int(summary["range_start"].timestamp() * 1000) == now - 7 * DAY_MS


async def test_llm_down_writes_the_plain_summary_with_fallback_status_and_the_error(
    settings: Settings, redis: Redis, pool: asyncpg.Pool, groq: FakeGroqApi
) -> None:
    groq.fail_always(503)
    with_llm = _with_llm(settings, groq)
    clock = Clock(time.time_ns() // 1_000_000)
    await _append(redis, with_llm, "15550005004", ["one", "two", "three"], clock() - 1000)
    [summary] = await _first_summaries(with_llm, pool, redis, clock)
    assert summary["status"] == "fallback"
    count = summary["input_messages_count"]
    assert summary["summary_text"] == f"Summary generated for {count} messages."
    assert "503" in summary["error"] or "InternalServer" in summary["error"] or \
        "APIStatusError" in summary["error"]
    assert summary["model_name"] is None


async def test_llm_up_stores_the_model_text_with_model_and_prompt_version(
    settings: Settings, redis: Redis, pool: asyncpg.Pool, groq: FakeGroqApi
) -> None:
    groq.reply_text = "- asked about pricing\n- wants a call"
    with_llm = _with_llm(settings, groq)
    clock = Clock(time.time_ns() // 1_000_000)
    await _append(redis, with_llm, "15550005005", ["price?", "call me"], clock() - 1000)
    [summary] = await _first_summaries(with_llm, pool, redis, clock)
    assert summary["status"] == "success"
    assert summary["summary_text"] == "- asked about pricing\n- wants a call"
    assert summary["model_name"] == "openai/gpt-oss-20b"
    assert summary["prompt_version"] == "summary-v1"
    assert summary["error"] is None
    assert "price?" in groq.last_request()["messages"][-1]["content"]


async def test_debug_endpoint_is_404_unless_enabled_and_for_an_unknown_phone(
    settings: Settings, redis: Redis, pool: asyncpg.Pool
) -> None:
    async with ingress(settings) as client:
        off = await client.post("/debug/enqueue-summary")
    assert off.status_code == 404
    debug = msgspec.structs.replace(settings, debug=True)
    await _append(redis, debug, "10000000000", ["hello"], time.time_ns() // 1_000_000)
    async with consumers(debug, [Projector.from_settings(debug)]):
        await eventually(lambda: drained(redis, debug, "projector"))
    async with ingress(debug) as client:
        default = await client.post("/debug/enqueue-summary")
        as_get = await client.get("/debug/enqueue-summary", params={"phone": "+10000000000"})
        unknown = await client.get("/debug/enqueue-summary", params={"phone": "+19999999999"})
    assert default.status_code == 200 and default.json()["ok"] is True
    assert as_get.status_code == 200
    job_id = default.json()["jobId"]
    entries = await redis.xrange(Keys(debug.key_prefix, 1).stream(0), min=job_id, max=job_id)
    assert entries[0][1][b"type"] == b"SummaryRequested"
    assert unknown.status_code == 404
    assert "no identity" in unknown.json()["error"]
