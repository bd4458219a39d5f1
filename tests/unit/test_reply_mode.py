"""Contextual or standalone, decided from counts and an injected clock (no sleeps)."""

import pytest

from consumers.replier.reply_mode import ReplyMode, ReplyModeRule, decide_reply_mode

RECEIVED = 1_700_000_000_000


@pytest.mark.parametrize(
    ("messages_after", "elapsed_ms", "expected"),
    [
        (0, 0, ReplyMode.STANDALONE),
        (1, 0, ReplyMode.STANDALONE),  # exactly one after: still standalone
        (2, 0, ReplyMode.CONTEXTUAL),  # more than one after
        (5, 500, ReplyMode.CONTEXTUAL),
        (0, 10_000, ReplyMode.STANDALONE),  # exactly 10 s: not yet stale
        (0, 10_001, ReplyMode.CONTEXTUAL),  # more than 10 s
        (1, 60_000, ReplyMode.CONTEXTUAL),
    ],
)
def test_the_contextual_rule_decides_the_reply_mode(
    messages_after: int, elapsed_ms: int, expected: ReplyMode
) -> None:
    assert decide_reply_mode(messages_after, RECEIVED, RECEIVED + elapsed_ms) is expected


def test_thresholds_are_configurable() -> None:
    rule = ReplyModeRule(after_count=3, stale_ms=2_000)
    assert decide_reply_mode(3, RECEIVED, RECEIVED, rule) is ReplyMode.STANDALONE
    assert decide_reply_mode(4, RECEIVED, RECEIVED, rule) is ReplyMode.CONTEXTUAL
    assert decide_reply_mode(0, RECEIVED, RECEIVED + 2_001, rule) is ReplyMode.CONTEXTUAL
