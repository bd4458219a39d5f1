"""The one way a name (never a value) may enter SQL text: validated, then quoted."""

from __future__ import annotations

import re

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def quote_identifier(name: str) -> str:
    """``messages_rebuild`` -> ``"messages_rebuild"``; anything else raises ValueError."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def quote_identifiers(names: tuple[str, ...] | list[str]) -> str:
    """``("id", "user_id")`` -> ``"id", "user_id"`` (a column list); ValueError as above."""
    return ", ".join(quote_identifier(name) for name in names)
