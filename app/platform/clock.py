"""The one wall clock of the product, in integer milliseconds (stream ids and events use ms).

Code that follows a clock-driven rule takes a ``Callable[[], int]`` defaulting to ``now_ms``,
so tests pass their own clock instead of sleeping.
"""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    """Milliseconds since the Unix epoch, now."""
    return time.time_ns() // 1_000_000
