"""The garbage collector's settings a consumer process takes once started (decision 0022)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from app.platform.runtime.collector import YOUNG_THRESHOLD, settle_start_up_heap


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_settling_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    older = gc.get_threshold()[1:]
    settle_start_up_heap()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *older)


@pytest.mark.usefixtures("restored_collector")
def test_cycles_made_after_settling_are_still_collected() -> None:
    settle_start_up_heap()

    class Node:
        partner: object = None

    first, second = Node(), Node()
    first.partner, second.partner = second, first
    del first, second
    assert gc.collect() >= 2
