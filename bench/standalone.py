"""``python -m bench.<name>``: the command line every benchmark module shares."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench import event_loop
from bench.figures import Figure, render_table
from bench.processes import BenchError
from bench.scratch_space import DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL


def run_standalone(
    name: str,
    doc: str | None,
    argv: Sequence[str] | None,
    add_arguments: Callable[..., None],
    options_from: Callable[[argparse.Namespace, str, str], Any],
    run: Callable[[Any], Awaitable[list[Figure]]],
) -> int:
    """Parse ``--smoke`` first (it changes the defaults), then the module's own options;
    run the benchmark and print its table. A BenchError is one line on stderr and exit 1."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.{name}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    parser.add_argument("--database-url", default=DEFAULT_ADMIN_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    # --help waits for the full parser: answered here, it would leave the module's options out.
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--smoke", action="store_true")
    known, _ = first.parse_known_args(argv)
    add_arguments(parser, smoke=known.smoke)
    args = parser.parse_args(argv)
    try:
        figures = event_loop.run(run(options_from(args, args.database_url, args.redis_url)))
    except BenchError as exc:
        print(f"bench.{name}: {exc}", file=sys.stderr)
        return 1
    print()
    print(render_table(figures))
    return 0
