"""Rows -> PostgreSQL's binary ``COPY`` format, built in Python (for ``copy_to_table(source=)``).

Replay builds its pages' rows in a worker process and hands the main process ready bytes, so
the process that talks to PostgreSQL does not encode records (asyncpg's per-record encoding
was the largest single item of replay's profile). Values are what asyncpg would accept for
the column: str for uuid (hyphenated or not) and text-like columns and jsonb (JSON text),
timezone-aware datetime for timestamptz, int for integers, bool, float.

Format: PostgreSQL docs, "COPY — Binary Format": a header, then per row a 16-bit field count
and per field a 32-bit length (-1 for NULL) and the value in the type's binary form.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

__all__ = ["HEADER", "TRAILER", "column_types", "encode_rows", "encoders_for"]

HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)
NULL = struct.pack("!i", -1)

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_length = struct.Struct("!i").pack
_int2 = struct.Struct("!ih").pack
_int4 = struct.Struct("!ii").pack
_int8 = struct.Struct("!iq").pack
_float8 = struct.Struct("!id").pack
_field_count = struct.Struct("!h").pack
_UUID_FIELD = _length(16)
_INT8_LENGTH = 8

Encoder = Callable[[object], bytes]  # a value (not None) -> its length prefix and bytes


def _text(value: object) -> bytes:
    data = value.encode()  # type: ignore[attr-defined]
    return _length(len(data)) + data


def _jsonb(value: object) -> bytes:
    data = value.encode()  # type: ignore[attr-defined]
    return _length(len(data) + 1) + b"\x01" + data  # jsonb's binary form: version 1, then text


def _uuid(value: object) -> bytes:
    data = bytes.fromhex(value.replace("-", ""))  # type: ignore[attr-defined]
    if len(data) != 16:
        raise ValueError(f"not a UUID: {value!r}")
    return _UUID_FIELD + data


def _timestamptz(value: object) -> bytes:
    delta: timedelta = value - _PG_EPOCH  # type: ignore[operator]
    return _int8(_INT8_LENGTH,
                 (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def _bool(value: object) -> bytes:
    return b"\x00\x00\x00\x01\x01" if value else b"\x00\x00\x00\x01\x00"


_ENCODERS: dict[str, Encoder] = {
    "uuid": _uuid,
    "text": _text,
    "varchar": _text,
    "bpchar": _text,
    "jsonb": _jsonb,
    "timestamptz": _timestamptz,
    "int2": lambda v: _int2(2, v),  # type: ignore[arg-type]
    "int4": lambda v: _int4(4, v),  # type: ignore[arg-type]
    "int8": lambda v: _int8(8, v),  # type: ignore[arg-type]
    "float8": lambda v: _float8(8, v),  # type: ignore[arg-type]
    "bool": _bool,
}


async def column_types(connection: asyncpg.Connection, table: str,
                       columns: Sequence[str]) -> list[str]:
    """The type names (``pg_type.typname``) of ``columns`` of ``table``, in their order."""
    rows = await connection.fetch(
        "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped", table)
    by_name = {r["attname"]: r["typname"] for r in rows}
    missing = [c for c in columns if c not in by_name]
    if missing:
        raise ValueError(f"table {table} has no column(s) {', '.join(missing)}")
    return [by_name[c] for c in columns]


def encoders_for(types: Sequence[str]) -> list[Encoder]:
    """One encoder per column; ValueError for a type this module does not write."""
    unknown = [t for t in types if t not in _ENCODERS]
    if unknown:
        raise ValueError(f"no binary COPY encoder for type(s) {', '.join(unknown)}")
    return [_ENCODERS[t] for t in types]


def encode_rows(encoders: Sequence[Encoder], rows: Iterable[Sequence[object]]) -> bytes:
    """The whole COPY stream (header, rows, trailer) for ``rows`` of ``len(encoders)`` values."""
    count = _field_count(len(encoders))
    parts = [HEADER]
    append = parts.append
    pairs = list(enumerate(encoders))
    for row in rows:
        append(count)
        for i, encode in pairs:
            value = row[i]
            append(NULL if value is None else encode(value))
    append(TRAILER)
    return b"".join(parts)
