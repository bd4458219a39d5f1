"""Row changes written with few rows (one array statement a kind) or many (COPY), applied
again (a redelivery) or over rows partly there: the same rows either way."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import asyncpg
import pytest

from app.devtools.webhook_bodies import delivery, encode, text_message
from app.ingress.parse_webhook import events_from_texts, parse_webhook
from app.platform.settings import Settings
from projections.row_changes import RowChanges, ms_to_datetime
from projections.write_rows import FEW_ROWS, prepare_staging, use_row_times, write_row_changes
from schema.events import DeliveryStatusReceived, ReplySent, event_type_name
from schema.ids import event_id_for


def _changes(count: int, *, first: int = 0) -> RowChanges:
    """``count`` messages of distinct senders, each replied to and its reply delivered."""
    messages = [text_message(f"1555000{i:04d}", f"words {i}", wamid=f"wamid.rows.{i}")
                for i in range(first, first + count)]
    events = events_from_texts(parse_webhook(encode(delivery(*messages))).texts,
                               1_700_000_000_000)
    changes = RowChanges()
    for n, event in enumerate(events):
        changes.add(0, f"1700000000000-{2 * n}", event)
        changes.add(0, f"1700000000000-{2 * n + 1}", ReplySent(
            event_id=event_id_for("reply", event.message_id), occurred_at=1_700_000_001_000,
            message_id=event.message_id, user_id=event.user_id, reply_text=f"re {n}",
            replied_at=1_700_000_001_000, contextual=False, outbound_message_id=f"out.{n}",
            model=None, fallback_used=False))
        changes.add(0, f"1700000000001-{n}", DeliveryStatusReceived(
            event_id=event_id_for("status", f"out.{n}"), occurred_at=1_700_000_002_000,
            outbound_message_id=f"out.{n}", status="delivered", status_at=1_700_000_002,
            recipient=None, recipient_bsuid=None, error_code=None, error_title=None,
            received_at=1_700_000_002_000))
    assert {event_type_name(e) for e in events} == {"MessageReceived"}
    return changes


async def _write(connection: asyncpg.Connection, changes: RowChanges) -> None:
    async with connection.transaction():
        await write_row_changes(connection, changes)


async def _rows(connection: asyncpg.Connection) -> list[tuple[object, ...]]:
    rows = await connection.fetch(
        "SELECT m.text, m.reply_text, m.reply_outbound_id, s.status, "
        "(SELECT count(*) FROM users WHERE id = m.user_id) AS users, "
        "(SELECT count(*) FROM identities WHERE user_id = m.user_id) AS identities "
        "FROM messages m JOIN delivery_statuses s ON s.outbound_message_id = m.reply_outbound_id "
        "ORDER BY m.reply_outbound_id")
    return [tuple(r.values()) for r in rows]


@pytest.mark.parametrize("count", [FEW_ROWS, FEW_ROWS + 1])
async def test_rows_are_the_same_written_once_again_or_over_rows_partly_there(
    settings: Settings, count: int
) -> None:
    connection = await asyncpg.connect(settings.database_url)
    try:
        await prepare_staging(connection)
        await _write(connection, _changes(count - 2, first=2))  # some rows are there already
        await _write(connection, _changes(count))
        await _write(connection, _changes(count))  # redelivered
        rows = await _rows(connection)
        archived = await connection.fetchval("SELECT count(*) FROM event_archive")
    finally:
        await connection.close()
    expected = sorted((f"words {i}", f"re {i}", f"out.{i}", "delivered", 1, 1)
                      for i in range(count))
    assert sorted(rows) == expected
    assert archived == 3 * count


@pytest.mark.parametrize("count", [FEW_ROWS, FEW_ROWS + 1])
async def test_row_times_are_written_as_the_datetimes_of_their_events(
    settings: Settings, count: int
) -> None:
    """Rows hold times as microseconds (``RowTime``); the writer's codec turns them into the
    instants the events name, by COPY and by the few-rows array alike."""
    changes = _changes(count)
    connection = await asyncpg.connect(settings.database_url)
    try:
        await prepare_staging(connection)
        await _write(connection, changes)
        plain = await asyncpg.connect(settings.database_url)  # asyncpg's own codec reads
        try:
            rows = await plain.fetch(
                "SELECT m.created_at, m.client_timestamp, m.replied_at, u.created_at AS user_at, "
                "i.created_at AS identity_at, s.status_at, s.updated_at FROM messages m "
                "JOIN users u ON u.id = m.user_id JOIN identities i ON i.id = m.identity_id "
                "JOIN delivery_statuses s ON s.outbound_message_id = m.reply_outbound_id")
        finally:
            await plain.close()
    finally:
        await connection.close()
    received = ms_to_datetime(1_700_000_000_000)
    assert len(rows) == count
    for row in rows:
        assert tuple(row.values()) == (
            received, row["client_timestamp"], ms_to_datetime(1_700_000_001_000), received,
            received, datetime.fromtimestamp(1_700_000_002, UTC),
            ms_to_datetime(1_700_000_002_000))
        assert row["client_timestamp"] is not None


async def test_the_row_time_codec_reads_and_takes_datetimes_as_asyncpg_does(
    settings: Settings,
) -> None:
    """A connection readied for row times still takes datetimes (and dates) for timestamptz
    as asyncpg's own codec does, and reads timestamptz back the same, infinities included."""
    values = [datetime(2023, 11, 14, 22, 13, 20, 123_456, tzinfo=UTC),
              datetime(2023, 11, 14, 23, 13, 20, 1, tzinfo=timezone(timedelta(hours=1))),
              datetime(1969, 7, 20, 20, 17, 40), date(2024, 2, 29),
              datetime.max, datetime.min]
    query = ("SELECT $1::timestamptz AS t, $1::timestamptz::text AS as_text, "
             "'infinity'::timestamptz AS inf, '-infinity'::timestamptz AS neg_inf")
    timed = await asyncpg.connect(settings.database_url)
    plain = await asyncpg.connect(settings.database_url)
    try:
        await use_row_times(timed)
        await plain.execute("SET TIME ZONE 'UTC'")
        await timed.execute("SET TIME ZONE 'UTC'")
        for value in values:
            assert tuple(await timed.fetchrow(query, value)) == tuple(
                await plain.fetchrow(query, value)), value
        row_time = 1_700_000_000_123_456
        assert await timed.fetchval("SELECT $1::timestamptz", row_time) == datetime(
            2023, 11, 14, 22, 13, 20, 123_456, tzinfo=UTC)
    finally:
        await timed.close()
        await plain.close()
