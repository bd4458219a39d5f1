"""Unreadable messages read again: those this version can read become normal messages.

``mecove replay`` runs this before rebuilding: every message kept raw by a MessageUnreadable
and not yet recovered is parsed again with the current parser; each text it now yields goes
through the ingress's own steps (identity links, then the atomic append with its dedupe key)
as a MessageReceived that names the unreadable event it came from. Running it twice appends
nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg
import msgspec

from app.ingress.parse_webhook import ParsedWebhook, events_from_texts, read_message
from app.platform.eventlog.append import EventLog
from app.platform.identities import IdentityLinks

log = logging.getLogger("mecove.recovery")


@dataclass(slots=True)
class RecoveryReport:
    examined: int = 0
    recovered: int = 0  # MessageReceived appended (0 for a message recovered earlier)


async def recover_unreadable(connection: asyncpg.Connection, identity_links: IdentityLinks,
                             event_log: EventLog) -> RecoveryReport:
    """Append a MessageReceived for every unreadable text the current parser can read."""
    report = RecoveryReport()
    rows = await connection.fetch(
        "SELECT event_id, raw_message, raw_contacts, received_at FROM unreadable_messages "
        "WHERE recovered_message_id IS NULL AND raw_message IS NOT NULL "
        "ORDER BY received_at, event_id")
    for row in rows:
        report.examined += 1
        parsed = ParsedWebhook()
        read_message(row["raw_message"].encode(), row["raw_contacts"], parsed)
        if not parsed.texts:
            continue
        received_at_ms = int(row["received_at"].timestamp() * 1000)
        resolutions = await identity_links.resolve([t.sender for t in parsed.texts])
        events = [
            msgspec.structs.replace(event, recovered_from=str(row["event_id"]))
            for event in events_from_texts(parsed.texts, received_at_ms, resolutions)
        ]
        entry_ids = await event_log.append_messages(events)
        report.recovered += sum(1 for entry_id in entry_ids if entry_id)
        for event in events:
            log.info("unreadable message recovered", extra={"fields": {
                "event_id": event.event_id, "recovered_from": event.recovered_from,
                "user_id": event.user_id}})
    return report
