"""The garbage collector's settings in a consumer process (decision 0022).

A consumer makes tens of thousands of short-lived containers per batch (the XREADGROUP reply's
lists, events, deliveries, rows), which refcounting frees; CPython's defaults run a young
collection every 700 net allocations and a full one each time a quarter as many objects as the
old generation holds have been promoted, walking every module, class and function imported at
start-up. The projector's reading path spent ~40 % of its CPU there (``bench.read_instructions``).

``settle_start_up_heap`` is called once the process has started (clients open, handlers
started): what start-up made goes to the permanent generation (``gc.freeze``), which no later
collection walks, and a young collection waits for ``YOUNG_THRESHOLD`` allocations. Cycles are
still collected, only later: at most that many objects' worth of garbage waits longer.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "settle_start_up_heap"]

YOUNG_THRESHOLD = 10_000  # CPython's default: 700


def settle_start_up_heap() -> None:
    """Freeze what start-up allocated and raise the young generation's threshold."""
    gc.collect()  # start-up's own garbage goes now, not into the permanent generation
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
