"""The garbage collector's settings a consumer process runs with (decision 0022), and that
they end with the block (tests and long-lived processes start and stop runtimes)."""

from __future__ import annotations

import gc

from app.platform.runtime.process import YOUNG_THRESHOLD
from app.platform.start_up_objects import start_up_objects_frozen


def test_the_block_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    with start_up_objects_frozen(YOUNG_THRESHOLD) as frozen:
        assert frozen > 0 and gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_THRESHOLD, *before[1:])
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cycles_made_inside_the_block_are_still_collected() -> None:
    class Node:
        partner: object = None

    with start_up_objects_frozen(YOUNG_THRESHOLD):
        first, second = Node(), Node()
        first.partner, second.partner = second, first
        del first, second
        assert gc.collect() >= 2
