"""The reply outcome states of a message and which of them are final (no Redis involved)."""

from __future__ import annotations

import pytest

from consumers.replier.reply_outcome import (
    FAILED,
    IS_FINAL_LUA,
    is_final,
    is_sent,
    sending_state,
    sent_state,
)


@pytest.mark.parametrize(
    ("state", "final", "sent"),
    [
        (sent_state("wamid.out1"), True, True),
        (sent_state(None), True, True),
        (FAILED, True, False),
        (sending_state("replier-a", 1_700_000_000_000), False, False),
        ("sending:", False, False),
        ("sent", False, False),
        ("failed:late", False, False),
    ],
)
def test_only_sent_and_failed_are_final(state: str, final: bool, sent: bool) -> None:
    assert is_final(state) is final
    assert is_sent(state) is sent


def test_the_states_read_as_the_stored_strings() -> None:
    assert sending_state("replier-a", 17) == "sending:replier-a:17"
    assert sent_state("wamid.out1") == "sent:wamid.out1"
    assert sent_state(None) == "sent:dry-run"
    assert FAILED == "failed"


def test_the_lua_final_test_checks_the_same_prefix_and_state() -> None:
    assert "string.sub(state, 1, 5) == 'sent:' or state == 'failed'" in IS_FINAL_LUA
