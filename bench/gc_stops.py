"""Garbage collections per process inside each measured window of a ``bench.e2e`` run.

``BENCH_GC_STOPS_DIR=DIR PYTHONPATH=bench/gc_stop_probe python -m bench.e2e ... > out.txt``
logs every collection of every process (``bench/gc_stop_probe``); then
``python -m bench.gc_stops DIR out.txt`` prints, per latency round (its ``measured window``
line) and process: collections by generation, their CPU in total and the longest, in ms.
A collection stops its process's event loop: every request or reply in flight waits for it.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_WINDOW = re.compile(r"^round (\d+) measured window: ([\d.]+)-([\d.]+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Collection:
    ended_at: float
    generation: int
    wall_ms: float
    cpu_ms: float
    collected: int


def read_log(path: Path) -> tuple[str, list[Collection]]:
    """A probe log: the process's command line and its collections."""
    lines = path.read_text().splitlines()
    name = lines[0].removeprefix("argv ") if lines else path.name
    collections = []
    for line in lines[1:]:
        at, generation, wall, cpu, collected = line.split()
        collections.append(Collection(float(at), int(generation), float(wall), float(cpu),
                                      int(collected)))
    return name, collections


def summary(collections: Sequence[Collection]) -> str:
    by_generation: dict[int, list[Collection]] = defaultdict(list)
    for collection in collections:
        by_generation[collection.generation].append(collection)
    parts = []
    for generation in sorted(by_generation):
        items = by_generation[generation]
        parts.append(f"gen{generation} {len(items)} x, CPU {sum(c.cpu_ms for c in items):.1f} "
                     f"ms, max {max(c.cpu_ms for c in items):.1f} ms CPU "
                     f"({max(c.wall_ms for c in items):.1f} wall), freed "
                     f"{sum(c.collected for c in items)}")
    return "; ".join(parts) or "none"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("output", type=Path, help="the bench.e2e run's printed output")
    args = parser.parse_args(argv)
    logs = [read_log(p) for p in sorted(args.directory.glob("gc-*.log"))]
    for round_, start, end in _WINDOW.findall(args.output.read_text()):
        print(f"round {round_} ({float(end) - float(start):.1f} s measured):")
        for name, collections in logs:
            inside = [c for c in collections if float(start) <= c.ended_at <= float(end)]
            if inside:
                print(f"  {name[:60]:<60} {summary(inside)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
