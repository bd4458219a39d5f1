"""The objects a process made while starting, kept out of the cyclic collector's walks.

CPython's full collection (generation 2) walks every tracked object the process holds; nearly
all of them are made once, at start-up: modules, classes, functions, Litestar's routes, the
pools. Measured (bench/README.md, branches ``ingress-tail``, ``projector-read``,
``replay-speed2``; decisions 0022, 0024, 0025):

* the ingress: under load a full collection ran every few thousand requests and took 50–70 ms
  of CPU, during which every request in flight waited (its p99 latency);
* a consumer: it makes tens of thousands of short-lived containers per batch (the XREADGROUP
  reply, events, deliveries, rows), which reference counting frees; the default young
  threshold (700) ran a collection every few hundred of them, ~40 % of the projector's
  reading path;
* replay: the same per page, ~3 µs an event.

``start_up_objects_frozen()`` runs a last collection, then ``gc.freeze()``: what is alive goes
to the permanent generation, which no collection walks, until the block ends
(``gc.unfreeze()``, so that an app or a runtime started and stopped in a longer-lived process,
e.g. the tests, can still be collected). With ``young_threshold`` a young collection also
waits for that many net allocations instead of 700 (restored at the end). Reference counting
frees frozen objects as usual; cycles made meanwhile are still collected, only later.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["start_up_objects_frozen"]


@contextmanager
def start_up_objects_frozen(young_threshold: int | None = None) -> Iterator[int]:
    """Collect, then freeze every object alive for the block (and, given ``young_threshold``,
    raise the young generation's threshold to it); yields how many objects are frozen."""
    threshold = gc.get_threshold()
    gc.collect()  # start-up's own garbage goes now, not into the permanent generation
    gc.freeze()
    if young_threshold is not None:
        gc.set_threshold(young_threshold, *threshold[1:])
    try:
        yield gc.get_freeze_count()
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()
