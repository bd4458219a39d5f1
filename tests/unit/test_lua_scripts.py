"""Every Lua script reads its inputs through the named readers, never by index arithmetic."""

from __future__ import annotations

import re

import pytest

from app.platform.eventlog.append import APPEND_MESSAGES_LUA
from app.platform.eventlog.lua import ARGUMENT_READERS, script
from app.platform.identities import RESOLVE_IDENTITIES_LUA
from app.platform.sender_appends import RESOLVE_AND_APPEND_LUA
from consumers.replier.reply_outcome import RECORD_REPLY_LUA
from consumers.replier.send_gate import SEND_GATE_LUA
from consumers.summarizer.coalescing import CLAIM_WINDOW_LUA, EMIT_DUE_LUA
from consumers.whatsapp.pacer import PAIR_LUA, TAKE_LUA

SCRIPTS = {
    "append_messages": APPEND_MESSAGES_LUA,
    "resolve_identities": RESOLVE_IDENTITIES_LUA,
    "resolve_and_append": RESOLVE_AND_APPEND_LUA,
    "record_reply": RECORD_REPLY_LUA,
    "claim_window": CLAIM_WINDOW_LUA,
    "emit_due": EMIT_DUE_LUA,
    "pair": PAIR_LUA,
    "take": TAKE_LUA,
    "send_gate": SEND_GATE_LUA,
}
INDEXING = re.compile(r"\b(KEYS|ARGV)\[")


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_a_script_indexes_keys_and_argv_only_inside_the_readers(name: str) -> None:
    body = SCRIPTS[name].removeprefix(script().rstrip("\n"))

    assert SCRIPTS[name].startswith(ARGUMENT_READERS.strip("\n"))
    assert INDEXING.findall(body) == []


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_only_the_entry_functions_spell_the_stream_fields(name: str) -> None:
    appends = SCRIPTS[name].count("redis.call('XADD'")

    assert appends == (1 if "xadd_event" in SCRIPTS[name] else 0)
