"""The send gate: the pace's slots and, only when the reply may go at once, the reply claim
(``SET NX sending:…``) and the reply mode's count, in one script call."""

from __future__ import annotations

from redis.asyncio import Redis

from app.platform.eventlog.keys import Keys
from consumers.replier.send_gate import SendGate
from consumers.whatsapp.pacer import Pacer
from consumers.whatsapp.pacing_rule import PaceRule

NOW = 1_000_000


def _pacer(redis: Redis, keys: Keys, clock: list[int], *, mps: float) -> Pacer:
    return Pacer(redis, keys, pair=PaceRule(6_000, 1), max_messages_per_second=mps,
                 give_up_ms=60_000, clock_ms=lambda: clock[0])


async def test_the_claim_is_taken_only_with_a_go_and_never_over_another_attempts(
    redis: Redis, key_prefix: str,
) -> None:
    keys = Keys(key_prefix, 1)
    clock = [NOW]
    pacer, gate = _pacer(redis, keys, clock, mps=1_000), SendGate(redis)
    tracking, outcome = keys.key(0, "tracking:u1"), keys.key(0, "reply:m1")
    await redis.zadd(tracking, {"m1": 1.0, "m2": 2.0, "m3": 3.0})

    first = await gate.take(pacer.take_inputs("u1", "m1", 1), tracking, "(1.0", outcome,
                            "sending:a:1", 60)
    assert first.pacing.go and first.claimed and first.taken and first.messages_after == 2
    assert await redis.get(outcome) == b"sending:a:1"

    # At once again (another attempt): the pair's slot is spent, so no go and no claim.
    refused = await gate.take(pacer.take_inputs("u1", "m1", 1), tracking, "(1.0", outcome,
                              "sending:b:2", 60)
    assert not refused.pacing.go and not refused.claimed and not refused.taken
    assert refused.pacing.at_ms >= NOW + 6_000 - 1

    # Its turn comes: the pace lets it go, but the claim stays the first attempt's.
    clock[0] += 6_000
    later = await gate.take(pacer.take_inputs("u1", "m1", 1), tracking, "(1.0", outcome,
                            "sending:b:3", 60)
    assert later.pacing.go and later.claimed and not later.taken
    assert await redis.get(outcome) == b"sending:a:1"


async def test_a_longer_wait_for_the_numbers_pace_leaves_the_claim_to_after_the_wait(
    redis: Redis, key_prefix: str,
) -> None:
    keys = Keys(key_prefix, 1)
    pacer, gate = _pacer(redis, keys, [NOW], mps=1), SendGate(redis)
    tracking = keys.key(0, "tracking:u2")
    first = await gate.take(pacer.take_inputs("u2", "m2", 1), tracking, "(0",
                            keys.key(0, "reply:m2"), "sending:a:1", 60)
    assert first.pacing.go and first.claimed and first.taken and first.messages_after == 0
    waits = await gate.take(pacer.take_inputs("u3", "m3", 2), keys.key(0, "tracking:u3"), "(0",
                            keys.key(0, "reply:m3"), "sending:a:1", 60)
    assert waits.pacing.go and waits.pacing.at_ms == NOW + 1_000
    assert not waits.claimed and await redis.get(keys.key(0, "reply:m3")) is None


async def test_a_wait_within_the_paces_rounding_is_claimed_before_it(
    redis: Redis, key_prefix: str,
) -> None:
    keys = Keys(key_prefix, 1)
    pacer, gate = _pacer(redis, keys, [NOW], mps=1_000), SendGate(redis)  # one send per ms
    for user, order in (("u4", 1), ("u5", 2)):
        outcome = keys.key(0, f"reply:{user}")
        passed = await gate.take(pacer.take_inputs(user, f"m-{user}", order),
                                 keys.key(0, f"tracking:{user}"), "(0", outcome, "sending:a:1", 60)
        assert passed.pacing.go and passed.claimed and passed.taken
        assert passed.pacing.at_ms == NOW + order - 1  # the second in the same ms waits 1 ms
        assert await redis.get(outcome) == b"sending:a:1"
