"""Replay, retention, status, dead letters and metrics: operating the service."""

from __future__ import annotations

import asyncio
import random
import sys
import uuid

import asyncpg
import msgspec
import pytest
from redis.asyncio import Redis

from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message
from app.ingress.parse_webhook import events_from_texts, parse_webhook
from app.operations.dead_letters import list_dead_letters, retry_dead_letter
from app.operations.log_status import read_status
from app.operations.retention import trim
from app.platform.eventlog.append import EventLog
from app.platform.eventlog.keys import Keys
from app.platform.runtime.consumer_group import ensure_group
from app.platform.settings import Settings
from consumers.replier.reply_outcome import ReplyOutcomes
from projections.projector import Projector
from projections.replay import replay
from schema.events import MessageReceived, ReplySent, SummaryCreated
from schema.ids import event_id_for
from tests.fakes.graph_api import FakeGraphApi
from tests.integration.consumer_helpers import (
    dead_letters,
    drained,
    events_of_type,
    master_of,
    replier,
)
from tests.service import consumers, eventually, ingress

TABLES = ("users", "identities", "messages", "summaries")


async def checksums(database_url: str) -> dict[str, tuple[int, str]]:
    """Row count and md5 of every projection table, rows in id order."""
    connection = await asyncpg.connect(database_url)
    try:
        out = {}
        for table in TABLES:
            row = await connection.fetchrow(
                f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, '|' "  # noqa: S608
                f"ORDER BY t.id::text), '')) AS sum FROM {table} t")
            out[table] = (int(row["n"]), row["sum"])
        return out
    finally:
        await connection.close()


async def append_mixed(redis: Redis, settings: Settings, count: int, seed: int = 7) -> None:
    """``count`` events: messages from many users, replies to some, summaries for some."""
    rng = random.Random(seed)
    log = EventLog(redis, Keys(settings.key_prefix, 1))
    outcomes = ReplyOutcomes(redis, log.keys)
    messages: list[MessageReceived] = []
    appended = 0
    while appended < count:
        roll = rng.random()
        if roll < 0.65 or not messages:
            sender = f"1555{rng.randrange(100):07d}"
            parsed = parse_webhook(encode(delivery(text_message(sender, f"hi {appended}"))))
            [event] = events_from_texts(parsed.texts, 1_700_000_000_000 + appended)
            await log.append_messages([event])
            messages.append(event)
        elif roll < 0.92:
            target = rng.choice(messages)
            await outcomes.record(ReplySent(
                event_id=event_id_for("ReplySent", target.message_id),
                occurred_at=1_700_000_100_000 + appended, message_id=target.message_id,
                user_id=target.user_id, reply_text=f"reply {appended}",
                replied_at=1_700_000_100_000 + appended, contextual=rng.random() < 0.5,
                outbound_message_id=f"wamid.out{appended}", model="m", fallback_used=False))
        else:
            target = rng.choice(messages)
            summary_id = str(uuid.UUID(int=rng.getrandbits(128)))
            await log.append(SummaryCreated(
                event_id=event_id_for("SummaryCreated", summary_id),
                occurred_at=1_700_000_200_000 + appended, summary_id=summary_id,
                user_id=target.user_id, range_start=1_699_000_000_000,
                range_end=1_700_000_200_000 + appended, status="success",
                summary_text=f"summary {appended}", model_name="m", prompt_version="s1",
                input_messages_count=rng.randrange(1, 10), input_hash=f"{appended:064x}",
                error=None), user_id=target.user_id)
        appended += 1


async def test_replay_of_two_thousand_mixed_events_leaves_every_table_equal(
    settings: Settings, redis: Redis
) -> None:
    await append_mixed(redis, settings, 2_000)
    async with consumers(settings, [Projector.from_settings(settings)]):
        await eventually(lambda: drained(redis, settings, "projector"), timeout=30)
    before = await checksums(settings.database_url)
    assert all(count > 0 for count, _ in before.values())
    report = await replay(settings.database_url, redis, Keys(settings.key_prefix, 1),
                          master=master_of(settings), batch_size=300)
    appended = await redis.xlen(Keys(settings.key_prefix, 1).stream(0))
    assert appended > 1_800  # a second reply to one message is refused at append
    assert report.swapped and report.archived_events == appended
    assert await checksums(settings.database_url) == before


async def test_replay_during_steady_traffic_equals_an_offline_rebuild(
    settings: Settings, redis: Redis
) -> None:
    await append_mixed(redis, settings, 500, seed=1)
    stop = asyncio.Event()

    async def traffic() -> None:
        seed = 100
        while not stop.is_set():
            await append_mixed(redis, settings, 20, seed=seed)
            seed += 1
            await asyncio.sleep(0.01)

    async with consumers(settings, [Projector.from_settings(settings)]):
        await eventually(lambda: drained(redis, settings, "projector"), timeout=30)
        writer = asyncio.create_task(traffic())
        await asyncio.sleep(0.2)
        report = await replay(settings.database_url, redis, Keys(settings.key_prefix, 1),
                              master=master_of(settings), batch_size=100)
        await asyncio.sleep(0.2)
        stop.set()
        await writer
        await eventually(lambda: drained(redis, settings, "projector"), timeout=30)
    assert report.swapped
    live = await checksums(settings.database_url)
    await replay(settings.database_url, redis, Keys(settings.key_prefix, 1),
                 master=master_of(settings))  # offline
    assert await checksums(settings.database_url) == live
    assert live["messages"][0] > 300


async def test_an_interrupted_replay_leaves_the_live_tables_unchanged(
    settings: Settings, redis: Redis
) -> None:
    await append_mixed(redis, settings, 300, seed=3)
    async with consumers(settings, [Projector.from_settings(settings)]):
        await eventually(lambda: drained(redis, settings, "projector"), timeout=30)
    before = await checksums(settings.database_url)

    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await replay(settings.database_url, redis, Keys(settings.key_prefix, 1),
                     master=master_of(settings), batch_size=50, before_swap=interrupt)
    assert await checksums(settings.database_url) == before
    connection = await asyncpg.connect(settings.database_url)
    try:
        leftovers = await connection.fetchval(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%\\_rebuild'")
    finally:
        await connection.close()
    assert leftovers == 0


async def test_trim_keeps_an_entry_still_pending_in_one_group(
    settings: Settings, redis: Redis
) -> None:
    await append_mixed(redis, settings, 30, seed=5)
    keys = Keys(settings.key_prefix, 1)
    stream = keys.stream(0)
    await ensure_group(redis, stream, "replier")
    # The replier read 10 entries and acknowledged all but the 5th.
    read = await redis.xreadgroup("replier", "r1", {stream: ">"}, count=10)
    ids = [e[0] for e in read[0][1]]
    await redis.xack(stream, "replier", *[i for n, i in enumerate(ids) if n != 4])
    appended = await redis.xlen(stream)
    async with consumers(settings, [Projector.from_settings(settings)]):
        await eventually(lambda: drained(redis, settings, "projector"), timeout=30)
    deleted = await trim(redis, keys, settings.database_url)
    remaining = [e[0] for e in await redis.xrange(stream)]
    assert deleted == 4  # the four acknowledged by every group before the pending one
    assert remaining[0] == ids[4]
    assert len(remaining) == appended - 4


async def test_status_reports_a_lagging_group(settings: Settings, redis: Redis) -> None:
    await append_mixed(redis, settings, 12, seed=9)
    keys = Keys(settings.key_prefix, 1)
    await ensure_group(redis, keys.stream(0), "replier")
    await redis.xreadgroup("replier", "slow-1", {keys.stream(0): ">"}, count=5)
    status = await read_status(redis, keys, settings.database_url)
    [replier_status] = [g for g in status.groups if g.group == "replier"]
    assert replier_status.lag == 7
    assert replier_status.pending == 5
    assert replier_status.oldest_pending_age_ms is not None
    assert [c.name for c in replier_status.consumers] == ["slow-1"]
    assert status.partitions[0].length == 12
    assert status.partitions[0].projector_checkpoint is None


async def test_dlq_retry_of_a_dead_lettered_reply_leads_to_one_send(
    reply_settings: Settings, redis: Redis, pool: asyncpg.Pool, graph: FakeGraphApi
) -> None:
    graph.fail_always(400, 131047)
    raw = encode(delivery(text_message("15550006001", "hello", wamid="wamid.dlq")))
    async with ingress(reply_settings) as client:
        await client.post("/webhooks/whatsapp", content=raw,
                          headers=signed_headers(raw, "test-app-secret"))
    keys = Keys(reply_settings.key_prefix, 1)
    async with consumers(reply_settings, [replier(reply_settings, pool, redis)]):
        await eventually(lambda: dead_letters(redis, reply_settings))
        graph.clear()
        [letter] = await list_dead_letters(redis, keys)
        assert letter.group == "replier" and "131047" in letter.error
        assert await retry_dead_letter(redis, keys, letter.dlq_id)
        await asyncio.to_thread(graph.wait_for_sends, 1, 10)
        await asyncio.sleep(0.5)
    assert len(graph.sent()) == 1
    assert await list_dead_letters(redis, keys) == []
    assert len(await events_of_type(redis, reply_settings, "ReplySent")) == 1


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_metrics_expose_the_counters_and_they_move(
    settings: Settings, redis: Redis
) -> None:
    async with ingress(settings) as client:
        before = (await client.get("/metrics")).text
        raw = encode(delivery(text_message("15550006002", "count me")))
        await client.post("/webhooks/whatsapp", content=raw,
                          headers=signed_headers(raw, "test-app-secret"))
        await client.post("/webhooks/whatsapp", content=raw,
                          headers=signed_headers(raw, "test-app-secret"))
        await client.post("/webhooks/whatsapp", content=raw, headers={"X-Hub-Signature-256": "x"})
        async with consumers(settings, [Projector.from_settings(settings)]):
            await eventually(lambda: drained(redis, settings, "projector"))
        after = (await client.get("/metrics")).text
    for name in ("mecove_webhooks_total", "mecove_append_seconds_count",
                 "mecove_consumer_processed_total", "mecove_handler_seconds_count",
                 "mecove_consumer_dead_lettered_total", "mecove_llm_fallbacks_total",
                 "mecove_graph_sends_total", "mecove_group_lag", "mecove_group_pending"):
        assert f"# TYPE {name.removesuffix('_total').removesuffix('_count')}" in after
    accepted = 'mecove_webhooks_total{outcome="accepted"}'
    duplicate = 'mecove_webhooks_total{outcome="duplicate"}'
    rejected = 'mecove_webhooks_total{outcome="rejected"}'
    assert _metric(after, accepted) == _metric(before, accepted) + 1
    assert _metric(after, duplicate) == _metric(before, duplicate) + 1
    assert _metric(after, rejected) == _metric(before, rejected) + 1
    processed = 'mecove_consumer_processed_total{group="projector"}'
    assert _metric(after, processed) >= _metric(before, processed) + 1
    assert msgspec.json.decode(await _status_json(settings)) is not None


async def _status_json(settings: Settings) -> bytes:
    from tests.processes import ROOT, env_for

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "status", "--json", cwd=ROOT, env=env_for(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out
