"""Row changes -> PostgreSQL: binary COPY into staging tables, one statement per table.

Each kind of row is copied (``COPY … FROM STDIN`` in binary, through asyncpg) into a temporary
staging table of the connection, then moved into its table by one ``INSERT … SELECT … ON
CONFLICT`` (or ``UPDATE … FROM`` for replies), inside the caller's transaction. Measured on a
batch of 1,000 messages this is several times faster than ``unnest`` over array parameters:
asyncpg encodes records for COPY far more cheaply than arrays. The staging tables empty
themselves at commit (``ON COMMIT DELETE ROWS``); ``prepare_staging`` creates them once per
connection, outside any transaction, before the first write. A kind with few rows (a projector
that keeps up) skips the COPY: its rows go in as one array of the stage's row type
(``unnest($1::<stage>[])``) with the same statement, and consecutive such kinds on different
tables share one statement (``WITH``): one round trip where each kind took two to four.

Row times are integers (``row_changes.RowTime``: microseconds since the Unix epoch, UTC); the
connection writes them into timestamptz columns through the codec ``use_row_times`` sets, which
``prepare_staging`` sets with the staging tables.

Table names come from ``TableSet`` (fixed names, checked when the set is made) and enter the
SQL through ``quote_identifier``, so replay can write the same statements into fresh tables.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from app.platform.sql_identifier import quote_identifier as q
from app.platform.sql_identifier import quote_identifiers
from projections.content_rows import write_content_changes
from projections.row_changes import RowChanges

__all__ = ["LIVE_TABLES", "TableSet", "prepare_staging", "use_row_times", "write_row_changes"]


@dataclass(frozen=True, slots=True)
class TableSet:
    users: str = "users"
    identities: str = "identities"
    messages: str = "messages"
    summaries: str = "summaries"
    unreadable: str = "unreadable_messages"
    statuses: str = "delivery_statuses"
    archive: str | None = "event_archive"  # None: replay does not re-archive
    user_keys: str | None = "user_keys"  # None: replay never writes keys (forget destroyed some)

    def __post_init__(self) -> None:
        """Refuse a set whose names could not enter SQL (ValueError), before any statement."""
        for name in (self.users, self.identities, self.messages, self.summaries,
                     self.unreadable, self.statuses, self.archive, self.user_keys):
            if name is not None:
                q(name)


LIVE_TABLES = TableSet()

Records = list[tuple[object, ...]]

# Up to this many rows of a kind go in as one array of the stage's row type (one prepared
# statement, one round trip) instead of a COPY (savepoint, column lookup, COPY, release: four):
# a projector that keeps up writes batches of a few events, where round trips are the cost.
FEW_ROWS = 32


@dataclass(frozen=True, slots=True)
class _Kind:
    """One kind of row: its staging table, the live table and columns it is shaped after,
    how its records come out of ``RowChanges`` and the statement that moves them in."""

    stage: str
    shaped_after: str  # a live table; the stage has these columns with their types
    columns: tuple[str, ...]
    records: Callable[[RowChanges], Records]
    # The statement that moves rows from a source (the stage, or ``unnest`` of its row type)
    apply: Callable[[TableSet, str], str]
    # Rows of this kind are new but for rare redeliveries: COPY them straight into this table.
    new_rows_go_to: Callable[[TableSet], str | None] | None = None


def _keyed(rows: dict[str, tuple]) -> Records:  # type: ignore[type-arg]
    return [(key,) + row for key, row in rows.items()]  # a third cheaper than (key, *row)


def _pairs(rows: dict[str, object]) -> Records:
    return list(rows.items())


_MESSAGE_COLUMNS = ("id", "user_id", "identity_id", "created_at", "client_timestamp",
                    "content_type", "text", "raw_payload", "source_message_id")
_IDENTITY_COLUMNS = ("id", "user_id", "channel", "channel_user_key", "created_at", "kind",
                     "parent_bsuid", "username")
_SUMMARY_COLUMNS = ("id", "user_id", "range_start", "range_end", "created_at", "status",
                    "summary_text", "model_name", "prompt_version", "input_messages_count",
                    "input_hash", "error")
_UNREADABLE_COLUMNS = ("event_id", "received_at", "reason", "raw_message", "raw_contacts")
_STATUS_COLUMNS = ("outbound_message_id", "status", "status_rank", "status_at", "recipient",
                   "recipient_bsuid", "error_code", "error_title", "updated_at")
_USER_KEY_COLUMNS = ("key_id", "user_id", "wrapped_key", "created_at")
_ARCHIVE_COLUMNS = ("event_id", "partition", "entry_ms", "entry_seq", "event_type",
                    "schema_version", "occurred_at", "body")


def _insert(target: str, source: str, columns: tuple[str, ...], conflict: str) -> str:
    names = quote_identifiers(columns)
    return (f"INSERT INTO {q(target)} AS t ({names}) "  # noqa: S608 - fixed identifiers
            f"SELECT {names} FROM {source} {conflict}")


# In dependency order: users before the identities and messages that reference them.
_KINDS: tuple[_Kind, ...] = (
    _Kind("mecove_stage_users", "users", ("id", "created_at"),
          lambda c: _pairs(c.users),  # type: ignore[arg-type]
          lambda t, source: _insert(t.users, source, ("id", "created_at"),
                            "ON CONFLICT (id) DO NOTHING")),
    _Kind("mecove_stage_identities", "identities", _IDENTITY_COLUMNS,
          lambda c: _keyed(c.identities),
          lambda t, source: _insert(t.identities, source, _IDENTITY_COLUMNS,
                            "ON CONFLICT (id) DO UPDATE "
                            "SET parent_bsuid = COALESCE(EXCLUDED.parent_bsuid, t.parent_bsuid), "
                            "username = COALESCE(EXCLUDED.username, t.username) "
                            # an unchanged row is not rewritten (no dead tuple, no index churn)
                            "WHERE EXCLUDED.parent_bsuid IS NOT NULL "
                            "AND EXCLUDED.parent_bsuid IS DISTINCT FROM t.parent_bsuid "
                            "OR EXCLUDED.username IS NOT NULL "
                            "AND EXCLUDED.username IS DISTINCT FROM t.username")),
    _Kind("mecove_stage_messages", "messages", _MESSAGE_COLUMNS,
          lambda c: _keyed(c.messages),
          lambda t, source: _insert(t.messages, source, _MESSAGE_COLUMNS,
                            "ON CONFLICT DO NOTHING"),
          lambda t: t.messages),
    _Kind("mecove_stage_replies", "messages",
          ("id", "replied_at", "reply_text", "reply_outbound_id"),
          lambda c: _keyed(c.replies),
          lambda t, source: f"UPDATE {q(t.messages)} AS m "  # noqa: S608
                    "SET replied_at = u.replied_at, "
                    "reply_text = u.reply_text, reply_outbound_id = u.reply_outbound_id "
                    f"FROM {source} AS u WHERE m.id = u.id"),
    _Kind("mecove_stage_summaries", "summaries", _SUMMARY_COLUMNS,
          lambda c: _keyed(c.summaries),
          lambda t, source: _insert(t.summaries, source, _SUMMARY_COLUMNS,
                            "ON CONFLICT (id) DO NOTHING")),
    _Kind("mecove_stage_unreadable", "unreadable_messages", _UNREADABLE_COLUMNS,
          lambda c: _keyed(c.unreadable),
          lambda t, source: _insert(t.unreadable, source, _UNREADABLE_COLUMNS,
                            "ON CONFLICT (event_id) DO UPDATE SET "
                            "received_at = EXCLUDED.received_at, reason = EXCLUDED.reason, "
                            "raw_message = EXCLUDED.raw_message, "
                            "raw_contacts = EXCLUDED.raw_contacts")),
    _Kind("mecove_stage_recovered", "unreadable_messages", ("event_id", "recovered_message_id"),
          lambda c: _pairs(c.recovered),  # type: ignore[arg-type]
          lambda t, source: _insert(t.unreadable, source,
                            ("event_id", "recovered_message_id"),
                            "ON CONFLICT (event_id) "
                            "DO UPDATE SET recovered_message_id = EXCLUDED.recovered_message_id")),
    _Kind("mecove_stage_statuses", "delivery_statuses", _STATUS_COLUMNS,
          lambda c: _keyed(c.statuses),
          lambda t, source: _insert(t.statuses, source, _STATUS_COLUMNS,
                            "ON CONFLICT (outbound_message_id) DO UPDATE SET "
                            "status = EXCLUDED.status, status_rank = EXCLUDED.status_rank, "
                            "status_at = EXCLUDED.status_at, recipient = EXCLUDED.recipient, "
                            "recipient_bsuid = EXCLUDED.recipient_bsuid, "
                            "error_code = EXCLUDED.error_code, "
                            "error_title = EXCLUDED.error_title, "
                            "updated_at = EXCLUDED.updated_at "
                            "WHERE EXCLUDED.status_rank > t.status_rank")),
)

# A key is issued once: its rows are new but for a redelivery, and go in by COPY like
# messages (an unnest of four arrays cost ~9 us of PostgreSQL CPU per key). Before the
# erasures (``write_content_changes``), which delete the keys they name.
_USER_KEYS = _Kind("mecove_stage_user_keys", "user_keys", _USER_KEY_COLUMNS,
                   lambda c: _keyed(c.user_keys),
                   lambda t, source: _insert(t.user_keys or "", source, _USER_KEY_COLUMNS,
                                     "ON CONFLICT (key_id) DO NOTHING"),
                   lambda t: t.user_keys)

_ARCHIVE = _Kind("mecove_stage_archive", "event_archive", _ARCHIVE_COLUMNS,
                 lambda c: c.archive,
                 lambda t, source: _insert(t.archive or "", source, _ARCHIVE_COLUMNS,
                                   "ON CONFLICT (event_id) DO NOTHING"),
                 lambda t: t.archive)


# PostgreSQL's epoch (2000-01-01 UTC) in microseconds since the Unix epoch, and as a datetime
_PG_EPOCH_US = 946_684_800_000_000
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# asyncpg's infinities: naive datetimes, and timestamptz's binary values for them
_INFINITY, _NEGATIVE_INFINITY = datetime.max, datetime.min
_PG_INFINITY, _PG_NEGATIVE_INFINITY = 2**63 - 1, -(2**63)


def _encode_time(value: object) -> tuple[int]:
    """A timestamptz parameter as microseconds since PostgreSQL's epoch: a row time (an int,
    the rows' own), or a datetime or date exactly as asyncpg encodes it (naive = local
    time, ``datetime.max``/``min`` = infinity)."""
    if type(value) is int:
        return (value - _PG_EPOCH_US,)
    if not isinstance(value, datetime):
        if not isinstance(value, date):
            raise TypeError(f"expected a row time (int), a datetime or a date, "
                            f"got {type(value).__name__}")
        value = datetime(value.year, value.month, value.day).astimezone()  # local midnight
    if value == _INFINITY:
        return (_PG_INFINITY,)
    if value == _NEGATIVE_INFINITY:
        return (_PG_NEGATIVE_INFINITY,)
    return ((value.astimezone(UTC) - _PG_EPOCH) // _US,)


def _decode_time(value: tuple[int]) -> datetime:
    """A timestamptz read back as asyncpg's own codec reads it (aware, UTC; the infinities
    as naive ``datetime.max``/``min``)."""
    micros = value[0]
    if micros == _PG_INFINITY:
        return _INFINITY
    if micros == _PG_NEGATIVE_INFINITY:
        return _NEGATIVE_INFINITY
    return _PG_EPOCH + timedelta(microseconds=micros)


_TIMED: weakref.WeakSet[asyncpg.Connection] = weakref.WeakSet()  # use_row_times done


async def use_row_times(connection: asyncpg.Connection) -> None:
    """Let ``connection`` take row times (ints) for timestamptz, datetimes still as before:
    a codec in asyncpg's tuple format (microseconds since 2000-01-01), a Python call per
    value where asyncpg's datetime encoder cost ~7,000 instructions. Reads on it give the
    datetimes asyncpg's own codec gives."""
    if connection in _TIMED:
        return
    await connection.set_type_codec("timestamptz", schema="pg_catalog", encoder=_encode_time,
                                    decoder=_decode_time, format="tuple")
    _TIMED.add(connection)


async def prepare_staging(connection: asyncpg.Connection) -> None:
    """Ready ``connection`` for ``write_row_changes``: the row times' codec
    (``use_row_times``) and the staging tables (temporary, emptied at each commit) unless it
    has them. Call it outside a transaction, so a rolled-back batch cannot take them away."""
    await use_row_times(connection)
    for kind in (*_KINDS, _USER_KEYS, _ARCHIVE):
        await connection.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {q(kind.stage)} "  # noqa: S608 - fixed identifiers
            f"ON COMMIT DELETE ROWS AS SELECT {quote_identifiers(kind.columns)} "
            f"FROM {q(kind.shaped_after)} WITH NO DATA")


async def write_row_changes(
    connection: asyncpg.Connection, changes: RowChanges, tables: TableSet = LIVE_TABLES
) -> None:
    """Apply ``changes`` idempotently, inside the caller's transaction, on a connection that
    ``prepare_staging`` readied: inserts skip existing keys, reply updates overwrite."""
    await use_row_times(connection)  # rows hold ints: asyncpg's own codec would refuse them
    kinds = (*_KINDS, *((_USER_KEYS,) if tables.user_keys is not None else ()),
             *((_ARCHIVE,) if tables.archive is not None else ()))
    few: list[tuple[_Kind, Records]] = []  # kinds of few rows not written yet, in order
    for kind in kinds:
        records = kind.records(changes)
        if not records:
            continue
        if len(records) <= FEW_ROWS:
            if any(k.shaped_after == kind.shaped_after for k, _ in few):
                await _write_few(connection, tables, few)  # its table after theirs
                few = []
            few.append((kind, records))
            continue
        if few:
            await _write_few(connection, tables, few)
            few = []
        target = kind.new_rows_go_to(tables) if kind.new_rows_go_to else None
        if target is not None and await _copy_if_all_new(connection, target, kind, records):
            continue
        await connection.copy_records_to_table(kind.stage, records=records,
                                               columns=list(kind.columns))
        await connection.execute(kind.apply(tables, q(kind.stage)))
    if few:
        await _write_few(connection, tables, few)
    await write_content_changes(connection, changes, messages=tables.messages,
                                summaries=tables.summaries, identities=tables.identities,
                                user_keys=tables.user_keys)  # erasures, after the keys


async def _write_few(connection: asyncpg.Connection, tables: TableSet,
                     few: list[tuple[_Kind, Records]]) -> None:
    """Kinds of few rows, each on its own table, in one statement: each kind's statement with
    its rows as an array of its stage's row type, all but the last in ``WITH`` (they all run;
    foreign keys are checked at the statement's end, so users may come with their messages)."""
    await connection.execute(_few_rows_statement(tables, few), *(records for _, records in few))


def _few_rows_statement(tables: TableSet, few: list[tuple[_Kind, Records]]) -> str:
    """``_write_few``'s statement: each kind's fixed ``apply`` statement reading ``$n`` (an
    array of its stage's row type), all but the last as ``WITH w<i> AS (...)``."""
    statements = [kind.apply(tables, f"unnest(${n}::{q(kind.stage)}[])")
                  for n, (kind, _) in enumerate(few, start=1)]
    *before, last = statements
    if not before:
        return last
    return "WITH " + ", ".join(f"w{n} AS ({s})" for n, s in enumerate(before)) + " " + last


async def _copy_if_all_new(connection: asyncpg.Connection, table: str, kind: _Kind,
                           records: Records) -> bool:
    """COPY ``records`` straight into ``table`` (the measured fastest write) under a
    savepoint; False, with nothing written, when one of them exists already."""
    try:
        async with connection.transaction():  # a savepoint: the caller's transaction survives
            await connection.copy_records_to_table(table, records=records,
                                                   columns=list(kind.columns))
    except asyncpg.UniqueViolationError:
        return False
    return True
