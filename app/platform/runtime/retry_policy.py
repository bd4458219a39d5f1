"""When to try a failed entry again, and when to give up (pure)."""

from __future__ import annotations

from dataclasses import dataclass


class RetryableError(Exception):
    """A failure that may pass on a later attempt (timeouts, 429, 5xx, connection loss)."""


class NonRetryableError(Exception):
    """A failure that will fail the same way again: dead-letter at once."""


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
        return isinstance(error, NonRetryableError) or attempt >= self.max_attempts
