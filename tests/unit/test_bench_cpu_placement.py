"""The ingress benchmark gives each server under test a core of its own; the load generator
(started from the benchmark's process) and a local Redis run on the others, and get their
own affinity back afterwards."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.cpu_placement import CpuPlacement

needs_two_cores = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="pinning needs sched_setaffinity and two cores",
)

AFFINITY_OF_CHILD = "import os; print(sorted(os.sched_getaffinity(0)))"


def test_no_pin_places_nothing_and_says_so() -> None:
    placement = CpuPlacement(enabled=False)
    assert not placement.active
    assert placement.server_preexec() is None
    assert placement.describe() == "not pinned: --no-pin"


@needs_two_cores
def test_a_server_runs_on_its_own_core_and_the_rest_on_the_others() -> None:
    own = os.sched_getaffinity(0)
    placement = CpuPlacement()
    placement.start(redis_pid=None)
    try:
        assert os.sched_getaffinity(0) == placement.other_cpus
        server = subprocess.run([sys.executable, "-c", AFFINITY_OF_CHILD], check=True,
                                capture_output=True, text=True,
                                preexec_fn=placement.server_preexec())
        load_generator = subprocess.run([sys.executable, "-c", AFFINITY_OF_CHILD], check=True,
                                        capture_output=True, text=True)
    finally:
        placement.restore()
    assert server.stdout.strip() == str(sorted(placement.server_cpus))
    assert load_generator.stdout.strip() == str(sorted(placement.other_cpus))
    assert placement.server_cpus.isdisjoint(placement.other_cpus)
    assert os.sched_getaffinity(0) == own


@needs_two_cores
def test_a_process_that_is_not_redis_is_never_moved() -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        before = os.sched_getaffinity(bystander.pid)
        placement = CpuPlacement()
        placement.start(redis_pid=bystander.pid)
        try:
            assert os.sched_getaffinity(bystander.pid) == before
            assert "Redis not pinned" in placement.describe()
        finally:
            placement.restore()
    finally:
        bystander.kill()
        bystander.wait()
