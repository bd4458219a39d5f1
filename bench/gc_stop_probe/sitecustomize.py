"""Every garbage collection of a Python process, one line each, for ``bench.gc_stops``.

Put this directory first on PYTHONPATH and name an output directory in ``BENCH_GC_STOPS_DIR``
(``bench.processes.clean_env`` keeps both): each process started then (the api, the
consumers, the fakes, the load generator) writes ``gc-<pid>.log`` there: its command line,
then per collection the wall-clock time it ended, its generation, its wall and CPU (thread)
milliseconds and how many objects it freed. Nothing is loaded without the variable.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any

_DIRECTORY = os.environ.get("BENCH_GC_STOPS_DIR")


def _install(directory: str) -> None:
    log = open(f"{directory}/gc-{os.getpid()}.log", "a", buffering=1)  # noqa: SIM115 - for the process's life
    log.write("argv " + " ".join(sys.argv) + "\n")
    started = [0.0, 0.0]

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0], started[1] = time.perf_counter(), time.thread_time()
            return
        wall = (time.perf_counter() - started[0]) * 1000
        cpu = (time.thread_time() - started[1]) * 1000
        log.write(f"{time.time():.3f} {info['generation']} {wall:.3f} {cpu:.3f} "
                  f"{info['collected']}\n")

    gc.callbacks.append(record)


if _DIRECTORY:
    _install(_DIRECTORY)
