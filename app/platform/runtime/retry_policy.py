"""When to try a failed entry again, and when to give up (pure)."""

from __future__ import annotations

from dataclasses import dataclass


class RetryableError(Exception):
    """A failure that may pass on a later attempt (timeouts, 429, 5xx, connection loss)."""


class NonRetryableError(Exception):
    """A failure that will fail the same way again: dead-letter at once."""


class RetryLater(Exception):
    """Not a failure: the entry may not go yet (a rate limit); handle it again at ``due_ms``.

    The runtime schedules it without spending an attempt; the handler owns the deadline after
    which it gives up (by raising a real error instead).
    """

    def __init__(self, due_ms: int, reason: str) -> None:
        super().__init__(reason)
        self.due_ms = due_ms
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay_ms: int = 1_000
    factor: float = 2.0
    max_delay_ms: int = 60_000

    def delay_ms(self, attempt: int) -> int:
        """Delay before the attempt after ``attempt`` (1-based): base * factor^(attempt-1)."""
        exponent = min(max(attempt - 1, 0), 64)  # beyond 2^64 the cap applies anyway
        return min(self.max_delay_ms, int(self.base_delay_ms * self.factor**exponent))

    def gives_up_after(self, attempt: int, error: BaseException) -> bool:
        """True when ``attempt`` failing with ``error`` must go to the dead-letter stream."""
        if isinstance(error, RetryLater):
            return False
        return isinstance(error, NonRetryableError) or attempt >= self.max_attempts
