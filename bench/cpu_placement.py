"""Which cores a benchmark's processes run on: the server under test on one core of its own.

The ingress figures compare servers "per core": one process each, on a 2-core machine whose
other core runs the load generator (wrk) and the Redis every target writes to. Left to the
scheduler, that split is not what happens: wrk wakes the server per request and the kernel
often places both on one core, so a server that also waits for Redis ends up sharing its core
with wrk while the other core idles (seen with ``perf sched timehist``: ingress and wrk on
CPU 0, Redis on CPU 1, 0.65 cores idle). ``CpuPlacement`` makes the split explicit: servers
start pinned to ``server_cpus``; the benchmark process (so wrk, started from it) and a local
Redis run on the other cores for the duration, and Redis gets its own affinity back at the end.

Nothing is pinned on a machine with fewer than two cores, where ``sched_setaffinity`` is
missing, or with ``--no-pin``; ``describe()`` says which, for the report.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

__all__ = ["CpuPlacement"]


def _tasks(pid: int) -> list[int]:
    """Every thread of ``pid`` (affinity is per thread)."""
    try:
        return [int(name) for name in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


class CpuPlacement:
    """Servers on ``server_cpus``; this process, its children and a local Redis on the rest."""

    def __init__(self, enabled: bool = True) -> None:
        self.reason = ""
        self.server_cpus: set[int] = set()
        self.other_cpus: set[int] = set()
        self._own: set[int] | None = None
        self._redis: dict[int, set[int]] = {}
        if not enabled:
            self.reason = "not pinned: --no-pin"
            return
        if not hasattr(os, "sched_setaffinity"):
            self.reason = "not pinned: no sched_setaffinity on this platform"
            return
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            self.reason = f"not pinned: {len(cpus)} core available"
            return
        self.server_cpus, self.other_cpus = {cpus[0]}, set(cpus[1:])

    @property
    def active(self) -> bool:
        return bool(self.server_cpus)

    def describe(self) -> str:
        if not self.active:
            return self.reason
        others = _cpus(self.other_cpus)
        redis = (f"local Redis on CPU {others}" if self._redis
                 else "Redis not pinned (not a local Redis process)")
        return (f"server under test on CPU {_cpus(self.server_cpus)}; load generator on CPU "
                f"{others}; {redis}")

    def start(self, redis_pid: int | None) -> None:
        """Move this process (and so wrk, started later) and ``redis_pid``'s threads off the
        server's core. ``redis_pid`` None: Redis is not on this machine."""
        if not self.active:
            return
        self._own = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.other_cpus)
        if redis_pid is not None and _is_redis(redis_pid):
            for task in _tasks(redis_pid):
                with suppress(OSError):  # not ours to move (permissions): leave it
                    self._redis[task] = os.sched_getaffinity(task)
                    os.sched_setaffinity(task, self.other_cpus)

    def restore(self) -> None:
        """Give Redis and this process their own affinity back."""
        for task, cpus in self._redis.items():
            with suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(task, cpus)
        self._redis.clear()
        if self._own is not None:
            os.sched_setaffinity(0, self._own)
            self._own = None

    def server_preexec(self) -> Callable[[], None] | None:
        """For a server's ``preexec_fn``: pin it (and every thread it will start)."""
        if not self.active:
            return None
        cpus = set(self.server_cpus)
        return lambda: os.sched_setaffinity(0, cpus)


def _is_redis(pid: int) -> bool:
    """Whether ``pid`` here is a Redis server (a Redis in a container reports the pid of its
    own namespace, which here may be any process)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().startswith("redis")
    except OSError:
        return False


def _cpus(cpus: set[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))
