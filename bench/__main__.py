"""``python -m bench``: every benchmark, then one table of figures, baselines and budgets.

``--smoke`` runs each at tiny sizes (about a minute in all) so CI keeps the scripts working;
its figures mean nothing. Per-benchmark options: ``python -m bench.ingress --help`` etc.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

from bench import e2e, event_loop, ingress, projector
from bench.figures import Figure, render_table
from bench.processes import BenchError
from bench.scratch_space import DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL

BENCHMARKS = ("ingress", "projector", "e2e")


def machine_description() -> str:
    """nproc, CPU model, memory, Python: what the figures were measured on."""
    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in lscpu.splitlines()
                if line.startswith("Model name")
            ),
            model,
        )
    except OSError:
        pass
    memory = ""
    try:
        with open("/proc/meminfo") as meminfo:
            kib = int(meminfo.readline().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}){memory}; Python {platform.python_version()} "
        f"on {platform.system()} {platform.release()}"
    )


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


async def run_all(args: argparse.Namespace) -> list[Figure]:
    figures: list[Figure] = []
    admin, redis = args.database_url, args.redis_url
    if "ingress" in args.only:
        options = ingress.smoke_ingress_options() if args.smoke else ingress.IngressOptions()
        options = replace(options, peer=args.peer, admin_database_url=admin, redis_url=redis)
        figures += await ingress.run_ingress_bench(options)
        print()
    if "projector" in args.only:
        p_options = (
            projector.smoke_projector_options() if args.smoke else projector.ProjectorOptions()
        )
        p_options = replace(p_options, admin_database_url=admin, redis_url=redis)
        figures += await projector.run_projector_bench(p_options)
        print()
    if "e2e" in args.only:
        e_options = e2e.smoke_e2e_options() if args.smoke else e2e.E2eOptions()
        e_options = replace(e_options, admin_database_url=admin, redis_url=redis)
        figures += await e2e.run_e2e_bench(e_options)
        print()
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    ingress.add_no_peer_argument(parser)
    parser.add_argument(
        "--database-url",
        default=DEFAULT_ADMIN_DATABASE_URL,
        help="a database to run CREATE DATABASE from",
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)
    started = time.monotonic()
    load_before = load_average()
    print(f"machine: {machine_description()}")
    print(f"load average at start: {load_before}")
    print()
    try:
        figures = event_loop.run(run_all(args))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print(
        f"== summary ({'smoke sizes: figures are not meaningful; ' if args.smoke else ''}"
        f"{time.monotonic() - started:.0f}s; load average {load_before} at start, "
        f"{load_average()} at end)"
    )
    print(f"machine: {machine_description()}")
    print()
    print(render_table(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
