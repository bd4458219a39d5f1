"""Content keys and erasures -> PostgreSQL, inside the projector's (or replay's) transaction.

``UserKeyIssued`` stores a user's wrapped key in ``user_keys`` (its durable home; only the live
projection writes it, so replay never brings a destroyed key back): ``write_row_changes``
copies those rows in before this module's erasures run. ``UserForgotten`` deletes
the keys it names and erases the content of the user's rows made up to that moment: message
and reply texts become ``ERASED``, raw payloads, summary texts, input hashes and usernames
NULL; counts and timestamps stay. ``mecove forget`` runs the same erasure directly.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg

from app.platform.eventlog.content_crypto import ERASED
from app.platform.sql_identifier import quote_identifier as q
from projections.row_changes import RowChanges


async def write_content_changes(connection: asyncpg.Connection, changes: RowChanges, *,
                                messages: str, summaries: str, identities: str,
                                user_keys: str | None) -> None:
    """Apply each erasure in order: delete its keys from ``user_keys`` (when given; the
    issued keys are stored before, by ``write_row_changes``), erase the user's rows."""
    for user_id, (key_ids, forgotten_at) in changes.forgotten.items():
        if user_keys is not None:
            await connection.execute(
                f"DELETE FROM {q(user_keys)} WHERE key_id = ANY($1::text[])",  # noqa: S608
                key_ids)
        await erase_user_rows(connection, user_id, forgotten_at, messages=messages,
                              summaries=summaries, identities=identities)


async def erase_user_rows(connection: asyncpg.Connection, user_id: str, until: datetime, *,
                          messages: str = "messages", summaries: str = "summaries",
                          identities: str = "identities") -> tuple[int, int]:
    """Erase the content of the user's rows made up to ``until``; returns (messages,
    summaries) erased."""
    erased_messages = await connection.fetchval(
        f"WITH e AS (UPDATE {q(messages)} SET "  # noqa: S608
        "text = CASE WHEN text IS NULL THEN NULL ELSE $3 END, raw_payload = NULL, "
        "reply_text = CASE WHEN reply_text IS NULL THEN NULL ELSE $3 END "
        "WHERE user_id = $1 AND created_at <= $2 RETURNING 1) SELECT count(*) FROM e",
        user_id, until, ERASED)
    erased_summaries = await connection.fetchval(
        f"WITH e AS (UPDATE {q(summaries)} SET summary_text = NULL, "  # noqa: S608
        "input_hash = NULL WHERE user_id = $1 AND created_at <= $2 RETURNING 1) "
        "SELECT count(*) FROM e", user_id, until)
    await connection.execute(
        f"UPDATE {q(identities)} SET username = NULL WHERE user_id = $1", user_id)  # noqa: S608
    return int(erased_messages), int(erased_summaries)
