"""Row changes written with few rows (one array statement a kind) or many (COPY), applied
again (a redelivery) or over rows partly there: the same rows either way."""

from __future__ import annotations

import asyncpg
import pytest

from app.devtools.webhook_bodies import delivery, encode, text_message
from app.ingress.parse_webhook import events_from_texts, parse_webhook
from app.platform.settings import Settings
from projections.row_changes import RowChanges
from projections.write_rows import FEW_ROWS, prepare_staging, write_row_changes
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
