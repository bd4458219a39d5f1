"""The ``mecove`` command line: parses arguments, loads settings, calls one function per command.

What a command runs lives elsewhere: ``app.wiring`` (the consumer processes),
``app.ingress.app_factory`` (the webhook service), ``app.supervisor`` (``up``: the service as
child processes), ``app.operations.commands`` (the operator's commands) and ``app.devtools``
(``dev``, ``simulate``).

The modules behind ``api``, ``consume``, ``dev`` and ``simulate`` are imported by their command
only: they pull in Litestar, uvicorn, Piccolo and the consumers, which would triple the start-up
time of ``mecove --help`` and of every other command (and ``dev``/``simulate`` need the optional
``mecove[dev]`` dependencies).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from app.devtools.simulate.simulate_options import SimulateOptions, add_simulate_arguments
from app.operations import commands as operations_commands
from app.platform.database import run_migrations
from app.platform.logs import configure_logging
from app.platform.settings import Settings, SettingsError, load_settings
from app.supervisor import service_commands, supervise
from app.wiring import GROUPS

try:
    import uvloop
except ImportError:  # optional: the standard event loop is only slower
    uvloop = None  # type: ignore[assignment]

# How ``mecove api`` serves the ingress: one worker, no access log (the benchmarks serve
# their baselines with exactly these).
UVICORN_OPTIONS: dict[str, Any] = {
    "log_level": "warning",
    "log_config": None,
    "access_log": False,
    "lifespan": "on",
    "timeout_graceful_shutdown": 10,
}


def _settings(require_urls: bool = True) -> Settings:
    """The settings from the environment, logging configured; exits 1 on invalid settings."""
    try:
        settings = load_settings(require_urls=require_urls)
    except SettingsError as exc:
        print(f"mecove: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secrets)
    return settings


def _run(coro: Coroutine[Any, Any, None]) -> None:
    if uvloop is None:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def _migrate(settings: Settings) -> int:
    try:
        _run(run_migrations(settings.database_url))
    except (OSError, ConnectionError) as exc:
        print(f"mecove: cannot reach PostgreSQL at DATABASE_URL: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_migrate(_: argparse.Namespace) -> int:
    return _migrate(_settings())


def _refuse_unsigned_webhooks(settings: Settings) -> None:
    from app.platform.settings import require_signed_webhooks

    try:
        require_signed_webhooks(settings)
    except SettingsError as exc:
        print(f"mecove: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_api(args: argparse.Namespace) -> int:
    settings = _settings()
    _refuse_unsigned_webhooks(settings)
    import uvicorn  # lazy: see the module docstring

    from app.ingress.app_factory import create_app

    uvicorn.run(create_app(settings), host=args.host, port=settings.port, **UVICORN_OPTIONS)
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    settings = _settings()
    from app.wiring.consumer_service import consume  # lazy: see the module docstring

    _run(consume(settings, GROUPS if args.group == "all" else (args.group,)))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Migrations, then the ingress and one process per consumer group, supervised."""
    settings = _settings()
    _refuse_unsigned_webhooks(settings)
    if _migrate(settings) != 0:
        return 1
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
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    api = sub.add_parser("api", help="run the webhook ingress (port: MECOVE_PORT)")
    api.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server listens on all
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
    operations_commands.register(sub, _settings)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
