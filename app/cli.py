"""The ``mecove`` command line: the composition root that wires settings to processes.

Handlers from ``projections`` and ``consumers`` are imported inside the commands that run
them, so ``app`` itself keeps depending only on ``schema``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import asyncpg
from redis.asyncio import Redis

from app.platform.settings import Settings, SettingsError, load_settings

GROUPS = ("projector", "replier", "summarizer")


def _settings(require_urls: bool = True) -> Settings:
    try:
        settings = load_settings(require_urls=require_urls)
    except SettingsError as exc:
        print(f"mecove: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    from app.platform.logs import configure_logging

    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secrets)
    return settings


def _run(coro) -> None:  # type: ignore[no-untyped-def]
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def cmd_migrate(_: argparse.Namespace) -> int:
    settings = _settings()
    from app.platform.database import run_migrations

    try:
        _run(run_migrations(settings.database_url))
    except (OSError, ConnectionError) as exc:
        print(f"mecove: cannot reach PostgreSQL at DATABASE_URL: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    settings = _settings()
    import uvicorn

    from app.ingress.app_factory import create_app

    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=settings.port,
        log_level="warning",
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    return 0


def build_handlers(  # type: ignore[no-untyped-def]
    settings: Settings, groups: Sequence[str], pool: asyncpg.Pool, redis: Redis
):
    """Handler objects for the named groups."""
    handlers = []
    for group in groups:
        if group == "projector":
            from projections.projector import Projector

            handlers.append(Projector(settings.database_url, settings.key_prefix))
        elif group == "replier":
            from consumers.replier.reply_handler import build_reply_handler

            handlers.append(build_reply_handler(settings, pool, redis))
        elif group == "summarizer":
            from consumers.summarizer.summary_handler import build_summary_handler

            handlers.append(build_summary_handler(settings, pool, redis))
    return handlers


async def consume(settings: Settings, groups: Sequence[str]) -> None:
    from app.platform.database import open_database
    from app.platform.redis_client import open_redis
    from app.platform.runtime.process import run_until_signalled, runtime_for

    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port)
    redis = open_redis(settings.redis_url)
    pool = await open_database(settings.database_url, min_size=1, max_size=5)
    handlers = build_handlers(settings, groups, pool, redis)
    try:
        for handler in handlers:
            await handler.start()
        await run_until_signalled([runtime_for(settings, redis, h) for h in handlers])
    finally:
        for handler in handlers:
            await handler.close()
        await redis.aclose()
        await pool.close()


def cmd_consume(args: argparse.Namespace) -> int:
    settings = _settings()
    groups = GROUPS if args.group == "all" else (args.group,)
    _run(consume(settings, groups))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    """Migrations, then the ingress and one process per consumer group, supervised."""
    settings = _settings()
    if cmd_migrate(args) != 0:
        return 1
    exe = [sys.executable, "-m", "app.cli"]
    commands = [exe + ["api", "--host", args.host]] + [exe + ["consume", g] for g in args.groups]
    return supervise(commands, settings)


def supervise(commands: list[list[str]], settings: Settings) -> int:
    """Start every command; the first to exit, or SIGINT / SIGTERM, stops them all."""
    children = []
    for index, command in enumerate(commands):
        env = os.environ.copy()
        if settings.metrics_port:  # each consumer process gets its own metrics port
            env["MECOVE_METRICS_PORT"] = str(settings.metrics_port + index)
        children.append(subprocess.Popen(command, env=env))
    print(f"mecove: up — webhook at http://127.0.0.1:{settings.port}/webhooks/whatsapp "
          f"({len(children)} processes)", file=sys.stderr, flush=True)
    stopping = False

    def stop_all(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    code = 0
    while not stopping:
        for child in children:
            if child.poll() is not None:
                print(f"mecove: {' '.join(child.args[3:])} exited with {child.returncode}; "
                      "stopping the rest", file=sys.stderr, flush=True)
                code = child.returncode or 1
                stopping = True
                break
        time.sleep(0.2)
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return code


def cmd_dev(args: argparse.Namespace) -> int:
    """Like ``up``, on embedded PostgreSQL and Redis (in ``--data-dir``) unless URLs are set."""
    settings = _settings(require_urls=False)
    from pathlib import Path

    from app.devtools.dev_command import run_dev

    exe = [sys.executable, "-m", "app.cli"]
    commands = [exe + ["api", "--host", args.host]] + [exe + ["consume", g] for g in args.groups]
    return run_dev(settings, Path(args.data_dir), commands, supervise)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Realistic signed webhook traffic; the conversation printed as the replies arrive."""
    settings = _settings(require_urls=False)
    from app.devtools.simulate.simulate_command import run_simulate
    from app.devtools.simulate.simulate_options import SimulateOptions

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
    from app.devtools.simulate.simulate_options import add_simulate_arguments

    simulate = sub.add_parser("simulate", help="signed webhook traffic, conversation printed")
    add_simulate_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)
    from app.operations import commands as ops_commands

    ops_commands.register(sub, _settings)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
