"""The pacing arithmetic with a clock passed in: bursts, spacing, waits, blocks."""

import pytest

from consumers.whatsapp.pacing_rule import PaceRule, admit, block

PAIR = PaceRule(interval_ms=6_000, burst=3)


def _run(rule: PaceRule, times: list[int], max_wait_ms: float = 0) -> list[tuple[bool, int]]:
    """Admit one message at each time in turn, keeping the state as a limiter would."""
    tat: float | None = None
    decisions = []
    for now in times:
        decision = admit(rule, tat, now, max_wait_ms)
        if decision.admitted:
            tat = decision.tat_ms
        decisions.append((decision.admitted, decision.at_ms))
    return decisions


@pytest.mark.parametrize(("times", "expected"), [
    # an idle pair lets the burst through at once, then one per interval
    ([0, 0, 0, 0], [(True, 0), (True, 0), (True, 0), (False, 6_000)]),
    ([0, 0, 0, 6_000, 6_000], [(True, 0), (True, 0), (True, 0), (True, 6_000),
                               (False, 12_000)]),
    # spaced sends never wait
    ([0, 6_000, 12_000, 18_000], [(True, 0), (True, 6_000), (True, 12_000), (True, 18_000)]),
    # after a quiet spell the burst is back
    ([0, 0, 0, 60_000, 60_000, 60_000], [(True, 0)] * 3 + [(True, 60_000)] * 3),
    # asking too early is refused without changing the state
    ([0, 0, 0, 1_000, 5_999, 6_000], [(True, 0)] * 3 + [(False, 6_000), (False, 6_000),
                                                        (True, 6_000)]),
])
def test_the_pair_limiter_admits_a_burst_then_one_per_interval(
        times: list[int], expected: list[tuple[bool, int]]) -> None:
    assert _run(PAIR, times) == expected


def test_the_throughput_limiter_spaces_sends_and_says_how_long_to_wait() -> None:
    rule = PaceRule.per_second(80)  # 12.5 ms apart
    decisions = _run(rule, [0, 0, 0, 0], max_wait_ms=30)
    assert decisions == [(True, 0), (True, 13), (True, 25), (False, 8)]


def test_a_refused_message_asks_again_when_it_would_fit_the_allowed_wait() -> None:
    rule = PaceRule.per_second(1)
    tat = admit(rule, None, 0).tat_ms
    assert admit(rule, tat, 0, max_wait_ms=200) == admit(rule, tat, 0, 200)
    assert admit(rule, tat, 0, max_wait_ms=200).at_ms == 800


def test_a_block_from_meta_keeps_the_pair_shut_for_the_pause() -> None:
    tat = block(PAIR, None, 10_000, pause_ms=6_000)
    assert admit(PAIR, tat, 15_999).admitted is False
    assert admit(PAIR, tat, 16_000).admitted is True


def test_a_block_never_shortens_a_longer_wait() -> None:
    assert block(PAIR, 100_000.0, 0, pause_ms=1_000) == 100_000.0
