"""The objects a process made while starting, kept out of the cyclic collector's walks.

CPython's full collection (generation 2) walks every tracked object the process holds. In the
ingress nearly all of them are made once, at start-up: modules, classes, functions, Litestar's
routes, the pools. Under load a full collection ran every few thousand requests and took
50–70 ms of CPU on the benchmark machine (``gc.callbacks``), during which every request in
flight waited: the ingress's p99 latency (``bench/README.md``, branch ``ingress-tail``).

``start_up_objects_frozen()`` runs a last collection, then ``gc.freeze()``: what is alive goes
to the permanent generation, which no collection walks, until the block ends
(``gc.unfreeze()``, so that an app started and stopped in a longer-lived process, e.g. the
tests, can still be collected). Reference counting frees frozen objects as usual; only a
cycle among them that became garbage while frozen waits for the unfreeze.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["start_up_objects_frozen"]


@contextmanager
def start_up_objects_frozen() -> Iterator[int]:
    """Collect, then freeze every object alive for the block; yields how many are frozen."""
    gc.collect()
    gc.freeze()
    try:
        yield gc.get_freeze_count()
    finally:
        gc.unfreeze()
