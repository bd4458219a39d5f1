"""``mecove api`` with every garbage collection timed, for ``bench.ingress_tail``.

Usage: ``python -m bench.servers.gc_timed_api REPORT_FILE [mecove api arguments...]``.

Each collection's generation, wall time, CPU time of the collecting thread and objects
collected are recorded through ``gc.callbacks``; SIGUSR1 starts the measured part (what came
before, start-up and warm-up, is reported apart). A thread writes the report (JSON) to
``REPORT_FILE`` every half second, so the driver reads it without stopping the server.
"""

from __future__ import annotations

import gc
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgspec


class Collection(msgspec.Struct, array_like=True):
    generation: int
    wall_ms: float
    cpu_ms: float
    collected: int
    measured: bool  # after SIGUSR1


class GcReport(msgspec.Struct):
    collections: list[Collection]
    frozen: int  # gc.get_freeze_count() when written
    max_rss_kb: int
    modules: int


class _Recorder:
    def __init__(self) -> None:
        self.collections: list[Collection] = []
        self.measured = False
        self._wall = 0.0
        self._cpu = 0.0

    def on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._wall, self._cpu = time.perf_counter(), time.thread_time()
            return
        self.collections.append(Collection(
            info["generation"], (time.perf_counter() - self._wall) * 1e3,
            (time.thread_time() - self._cpu) * 1e3, info["collected"], self.measured))

    def report(self) -> GcReport:
        import resource

        return GcReport(list(self.collections), gc.get_freeze_count(),
                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, len(sys.modules))


def _write_every_half_second(recorder: _Recorder, path: Path) -> None:
    while True:
        time.sleep(0.5)
        path.write_bytes(msgspec.json.encode(recorder.report()))


def main() -> int:
    report_path = Path(sys.argv[1])
    recorder = _Recorder()
    gc.callbacks.append(recorder.on_collection)
    signal.signal(signal.SIGUSR1, lambda *_: setattr(recorder, "measured", True))
    threading.Thread(target=_write_every_half_second, args=(recorder, report_path),
                     daemon=True).start()
    from app.cli import main as mecove

    return mecove(sys.argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
