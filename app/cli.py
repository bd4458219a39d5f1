"""The ``mecove`` command line: parses arguments, loads settings, calls one function per command.

What a command runs lives elsewhere: ``app.wiring`` (the consumer processes),
``app.ingress.app_factory`` (the webhook service), ``app.supervisor`` (``up``: the service as
child processes), ``app.operations.commands`` (the operator's commands) and ``app.devtools``
(``dev``, ``simulate``).

Every command runs inside ``main``'s one error boundary: an error the user can cause is one
line (``app.error_lines``) and exit code 1; ``MECOVE_DEBUG=true`` shows its traceback instead.
The operator's commands, given no ``DATABASE_URL`` / ``REDIS_URL``, use those published by a
``mecove dev`` running in ``.mecove/`` (``app.devtools.dev_instance``), and say so.

The modules behind ``api``, ``consume``, ``dev`` and ``simulate`` are imported by their command
only: they pull in Litestar, uvicorn, Piccolo and the consumers, which would triple the start-up
time of ``mecove --help`` and of every other command (and ``dev``/``simulate`` need the optional
``mecove[dev]`` dependencies).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from app.devtools.dev_instance import running_dev
from app.devtools.simulate.simulate_options import SimulateOptions, add_simulate_arguments
from app.error_lines import error_line
from app.operations import commands as operations_commands
from app.platform.logs import configure_logging
from app.platform.settings import (
    Settings,
    SettingsError,
    load_settings,
    require_master_key,
    require_signed_webhooks,
)
from app.supervisor import service_commands, supervise
from app.wiring import GROUPS
from app.wiring.clients import open_clients

try:
    import uvloop
except ImportError:  # optional: the standard event loop is only slower
    uvloop = None  # type: ignore[assignment]

# How ``mecove api`` serves the ingress: one worker, no access log (the benchmarks serve
# their baselines with exactly these). uvicorn picks uvloop and httptools itself (both
# installed). No ``server`` header (~3 k fewer instructions per request). X-Forwarded-* stays
# honoured from a local proxy (uvicorn's default): the console's sign-in throttle keys on the
# client's address, which behind a proxy on 127.0.0.1 would otherwise be the proxy's for every
# client (bench/README, "The server's floor": turning it off saved ~9 k, not taken).
UVICORN_OPTIONS: dict[str, Any] = {
    "log_level": "warning",
    "log_config": None,
    "access_log": False,
    "lifespan": "on",
    "timeout_graceful_shutdown": 10,
    "server_header": False,
    # Responses in one write (decision 0036); uvicorn's own choice without httptools.
    "http": ("app.ingress.one_write_responses:OneWriteHttpToolsProtocol"
             if importlib.util.find_spec("httptools") else "auto"),
}
DEV_DATA_DIR = ".mecove"  # ``mecove dev --data-dir``'s default, where it publishes its URLs


def _say(line: str) -> None:
    print(f"mecove: {line}", file=sys.stderr, flush=True)


def _settings(require_urls: bool = True) -> Settings:
    """The settings from the environment, logging configured (SettingsError if invalid)."""
    settings = load_settings(require_urls=require_urls)
    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secrets)
    return settings


def _operations_settings() -> Settings:
    """Like ``_settings``; a URL not given is taken from a ``mecove dev`` running here."""
    dev = running_dev(Path(DEV_DATA_DIR))
    if dev is None:
        return _settings()
    origin = f"mecove dev (pid {dev.pid}, {DEV_DATA_DIR}/)"
    settings = load_settings(fallback={"DATABASE_URL": dev.database_url,
                                       "REDIS_URL": dev.redis_url}, fallback_origin=origin)
    taken = [n for n in ("DATABASE_URL", "REDIS_URL") if settings.origin(n) == origin]
    if taken:
        _say(f"{' and '.join(taken)} not given: using those of the {origin}")
    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secrets)
    return settings


def _run(coro: Coroutine[Any, Any, None]) -> None:
    if uvloop is None:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def cmd_migrate(_: argparse.Namespace) -> int:
    from app.platform.migrations import run_migrations  # lazy: Piccolo only where it migrates

    _run(run_migrations(_settings().database_url))
    return 0


async def _check_servers(settings: Settings) -> None:
    """Connect to Redis and PostgreSQL once: an unreachable one is then one line, not the
    traceback uvicorn would log from a failed lifespan."""
    async with open_clients(settings, pool_max_size=1, must_answer=True) as clients:
        await clients.redis.ping()


def _refuse_unsigned_webhooks(settings: Settings) -> None:
    try:
        require_signed_webhooks(settings)
    except SettingsError as exc:
        print(f"mecove: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _workers(text: str) -> int:
    """``--workers``: a whole number of processes, at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def cmd_api(args: argparse.Namespace) -> int:
    settings = _settings()
    _refuse_unsigned_webhooks(settings)
    require_master_key(settings)
    _run(_check_servers(settings))
    import uvicorn  # lazy: see the module docstring

    from app.ingress.app_factory import create_app

    workers = args.workers or settings.api_workers
    if workers > 1:  # each worker process builds its own app (and pools) from the environment
        uvicorn.run("app.ingress.app_factory:create_app_from_environment", factory=True,
                    workers=workers, host=args.host, port=settings.port, **UVICORN_OPTIONS)
    else:
        uvicorn.run(create_app(settings), host=args.host, port=settings.port, **UVICORN_OPTIONS)
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    settings = _settings()
    require_master_key(settings)
    _run(_check_servers(settings))  # later outages are retried; at start they are a mistake
    from app.wiring.consumer_service import consume  # lazy: see the module docstring

    _run(consume(settings, GROUPS if args.group == "all" else (args.group,)))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Migrations, then the ingress and one process per consumer group, supervised."""
    settings = _settings()
    _refuse_unsigned_webhooks(settings)
    require_master_key(settings)
    from app.platform.migrations import run_migrations  # lazy: Piccolo only where it migrates

    _run(run_migrations(settings.database_url))
    return supervise(service_commands(args.host, args.groups), settings)


def cmd_dev(args: argparse.Namespace) -> int:
    """Like ``up``, on embedded PostgreSQL and Redis (in ``--data-dir``) unless URLs are set."""
    settings = _settings(require_urls=False)
    from app.devtools.dev_command import run_dev  # lazy: see the module docstring

    return run_dev(settings, Path(args.data_dir), service_commands(args.host, args.groups))


def cmd_simulate(args: argparse.Namespace) -> int:
    """Realistic signed webhook traffic; the conversation printed as the replies arrive."""
    settings = _settings(require_urls=False)
    from app.devtools.simulate.simulate_command import run_simulate  # lazy: module docstring

    return run_simulate(settings, SimulateOptions.from_args(args))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="mecove", description="MeCove WhatsApp backend")
    top.add_argument("--version", action="version",
                     version=f"mecove {importlib.metadata.version('mecove')}")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    api = sub.add_parser("api", help="run the webhook ingress (port: MECOVE_PORT)")
    api.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server listens on all
    api.add_argument("--workers", type=_workers, default=0,
                     help="uvicorn worker processes (default: MECOVE_API_WORKERS, else 1)")
    api.set_defaults(func=cmd_api)
    consume_p = sub.add_parser("consume", help="run a consumer group")
    consume_p.add_argument("group", choices=[*GROUPS, "all"])
    consume_p.set_defaults(func=cmd_consume)
    up = sub.add_parser("up", help="migrations, ingress and every consumer on this machine")
    up.add_argument("--host", default="0.0.0.0")  # noqa: S104
    up.add_argument("--groups", nargs="+", default=list(GROUPS), choices=GROUPS)
    up.set_defaults(func=cmd_up)
    dev = sub.add_parser("dev", help="up, on embedded PostgreSQL and Redis unless URLs are set")
    dev.add_argument("--data-dir", default=".mecove", help="embedded servers' data folder")
    dev.add_argument("--host", default="127.0.0.1", help="address the ingress listens on")
    dev.add_argument("--groups", nargs="+", default=list(GROUPS), choices=GROUPS)
    dev.set_defaults(func=cmd_dev)
    simulate = sub.add_parser("simulate", help="signed webhook traffic, conversation printed")
    add_simulate_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)
    operations_commands.register(sub, _operations_settings)
    return top


def _show_tracebacks() -> bool:
    try:
        return load_settings(require_urls=False).debug
    except SettingsError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; an error the user can cause is one line on stderr and exit code 1."""
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Exception as exc:  # noqa: BLE001 - mapped to a line, or re-raised as a bug
        line = error_line(exc)
        if line is None or _show_tracebacks():
            raise
        _say(line)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
