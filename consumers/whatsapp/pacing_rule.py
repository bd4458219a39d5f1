"""The pacing arithmetic (pure): may a message go now, and when may the next one?

A generic cell rate algorithm (GCRA): a limiter keeps one number, the theoretical arrival
time ``tat`` of the next message. A message conforms once ``tat - tolerance <= now``; sending
it moves ``tat`` one interval on. ``burst`` messages may go at once on an idle limiter, then
one per ``interval_ms`` (Meta's pair rate: about one every 6 s, bursts borrowed from later).

``admit`` with ``max_wait_ms`` > 0 also admits a message that conforms within that wait (the
caller sleeps ``at_ms - now``): that is how the number's throughput limiter smooths sends
instead of refusing them. ``block`` is what an answer "over the limit" from Meta does: the
limiter is full until ``now + pause_ms``.

``consumers/whatsapp/pacer.py`` runs the same arithmetic as Lua in Redis, so every replier
process shares one limiter per recipient and one for the number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Admission", "PaceRule", "admit", "block"]


@dataclass(frozen=True, slots=True)
class PaceRule:
    """One message per ``interval_ms`` on average, ``burst`` at once on an idle limiter."""

    interval_ms: float
    burst: int = 1

    @classmethod
    def per_second(cls, messages_per_second: float) -> PaceRule:
        """A smooth rate (no burst): ``messages_per_second`` evenly spaced."""
        return cls(1000.0 / messages_per_second, 1)

    @property
    def tolerance_ms(self) -> float:
        """How far ``tat`` may run ahead of now: the burst borrowed from later."""
        return self.interval_ms * (max(self.burst, 1) - 1)


@dataclass(frozen=True, slots=True)
class Admission:
    """``admitted``: the message goes at ``at_ms`` (now, or after a wait within the allowed
    one) and ``tat_ms`` is the limiter's new state. Refused: ask again at ``at_ms``; the state
    is unchanged."""

    admitted: bool
    at_ms: int
    tat_ms: float


def admit(rule: PaceRule, tat_ms: float | None, now_ms: int,
          max_wait_ms: float = 0.0) -> Admission:
    """The decision for one message at ``now_ms`` given the stored ``tat_ms`` (None = idle)."""
    start = max(tat_ms or 0.0, float(now_ms))
    conforms_at = start - rule.tolerance_ms
    if conforms_at - now_ms > max_wait_ms:
        return Admission(False, math.ceil(conforms_at - max_wait_ms), start)
    return Admission(True, max(math.ceil(conforms_at), now_ms), start + rule.interval_ms)


def block(rule: PaceRule, tat_ms: float | None, now_ms: int, pause_ms: float) -> float:
    """The state after Meta said "over the limit": nothing conforms before ``now + pause``."""
    return max(tat_ms or 0.0, now_ms + pause_ms + rule.tolerance_ms)
