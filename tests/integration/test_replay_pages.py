"""Replay's pages: binary COPY data as PostgreSQL reads it, built in-process or by workers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest
from redis.asyncio import Redis

from app.platform.eventlog.keys import Keys
from app.platform.settings import Settings
from projections.copy_binary import column_types, encode_rows, encoders_for
from projections.projector import Projector
from projections.replay import replay
from tests.integration.consumer_helpers import drained, fetch_rows, master_of
from tests.integration.test_operations import append_mixed, checksums
from tests.service import consumers, eventually

COLUMNS = ("id", "at", "note", "doc", "small", "big", "flag")


async def _projected_log(redis: Redis, settings: Settings, count: int, seed: int) -> None:
    """``count`` mixed events appended and drained by the projector."""
    await append_mixed(redis, settings, count, seed=seed)
    async with consumers(settings, [Projector.from_settings(settings)]):
        await eventually(lambda: drained(redis, settings, "projector"), timeout=30)


async def test_encoded_rows_read_back_as_the_values_they_came_from(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "CREATE TEMP TABLE copied (id uuid, at timestamptz, note varchar(64), doc jsonb, "
            "small int4, big int8, flag bool)")
        rows = [
            (str(uuid.UUID(int=1)), datetime(2026, 11, 30, 5, 1, 2, 345678, tzinfo=UTC),
             "tab\there, newline\n, back\\slash, émoji 🙂", '{"a": [1, "x\\ufffd"]}', -7,
             2**40, True),
            (uuid.UUID(int=2).hex, datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), None, None,
             None, None, False),
        ]
        encoders = encoders_for(await column_types(connection, "copied", COLUMNS))
        await connection.copy_to_table("copied", source=memoryview(encode_rows(encoders, rows)),
                                       columns=list(COLUMNS), format="binary")
        back = await connection.fetch("SELECT id::text, at, note, doc::text, small, big, flag "
                                      "FROM copied ORDER BY id")
    finally:
        await connection.close()
    assert [tuple(r) for r in back] == [
        (str(uuid.UUID(int=1)), rows[0][1], rows[0][2], '{"a": [1, "x\ufffd"]}', -7, 2**40,
         True),
        (str(uuid.UUID(int=2)), rows[1][1], None, None, None, None, False),
    ]


def test_a_column_type_without_an_encoder_is_refused() -> None:
    with pytest.raises(ValueError, match="numeric"):
        encoders_for(["uuid", "numeric"])


async def test_pages_built_by_workers_give_the_tables_built_in_process(
    settings: Settings, redis: Redis
) -> None:
    await _projected_log(redis, settings, 600, seed=11)
    keys = Keys(settings.key_prefix, 1)
    await replay(settings.database_url, redis, keys, master=master_of(settings), batch_size=70,
                 workers=0)
    in_process = await checksums(settings.database_url)
    report = await replay(settings.database_url, redis, keys, master=master_of(settings),
                          batch_size=70, workers=2)
    assert report.swapped and report.applied == report.archived_events
    assert await checksums(settings.database_url) == in_process
    assert in_process["messages"][0] > 300


async def test_a_worker_error_fails_replay_with_it_and_leaves_no_rebuild_tables(
    settings: Settings, redis: Redis
) -> None:
    await _projected_log(redis, settings, 200, seed=12)
    before = await checksums(settings.database_url)
    connection = await asyncpg.connect(settings.database_url)
    try:  # an archived body that is no event, in the middle of the log
        await connection.execute(
            "INSERT INTO event_archive (event_id, partition, entry_ms, entry_seq, event_type, "
            "schema_version, occurred_at, body) SELECT $1, partition, entry_ms, entry_seq + 1, "
            "'MessageReceived', 1, 0, 'not json' FROM event_archive "
            "ORDER BY partition, entry_ms, entry_seq OFFSET 100 LIMIT 1", uuid.uuid4())
    finally:
        await connection.close()
    with pytest.raises(msgspec.DecodeError):
        await replay(settings.database_url, redis, Keys(settings.key_prefix, 1),
                     master=master_of(settings), batch_size=20, workers=1)
    assert await checksums(settings.database_url) == before
    [left] = await fetch_rows(settings.database_url, "SELECT count(*) AS n FROM pg_tables "
                              "WHERE tablename LIKE '%\\_rebuild'")
    assert left["n"] == 0
