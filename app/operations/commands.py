"""The operator's commands: ``replay``, ``trim``, ``status``, ``dlq``, ``forget``,
``master-key``, ``rotate-master-key``."""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg
import msgspec
from redis.asyncio import Redis

from app.ingress.recovery import recover_unreadable
from app.operations.dead_letters import (
    drop_dead_letter,
    list_dead_letters,
    retry_dead_letter,
    show_dead_letter,
)
from app.operations.forget import forget, rewrite_append_only_files
from app.operations.key_rotation import rotate_master_key
from app.operations.log_status import LogStatus, format_status, read_status
from app.operations.retention import trim
from app.platform.eventlog.append import EventLog, content_keys_for
from app.platform.eventlog.content_crypto import MasterKeys
from app.platform.eventlog.content_keys import master_keys_for
from app.platform.eventlog.keys import Keys
from app.platform.identities import IdentityLinks
from app.platform.settings import Settings, require_master_key
from app.platform.sql_identifier import quote_identifier
from app.wiring.clients import redis_client
from projections.replay import replay


def register(sub: argparse._SubParsersAction, settings_loader) -> None:  # type: ignore[type-arg,no-untyped-def]
    """Add the operator's subcommands to the ``mecove`` parser."""

    def run(coro_factory):  # type: ignore[no-untyped-def]
        def command(args: argparse.Namespace) -> int:
            settings = settings_loader()
            return asyncio.run(coro_factory(settings, args))
        return command

    replay_parser = sub.add_parser("replay", help="rebuild every projection from the log, live")
    replay_parser.add_argument("--dry-run", action="store_true",
                               help="print counts, change nothing")
    replay_parser.add_argument("--batch-size", type=int, default=5_000)
    replay_parser.set_defaults(func=run(_replay))

    sub.add_parser("trim", help="delete stream entries archived and acked by every group"
                   ).set_defaults(func=run(_trim))

    status = sub.add_parser("status", help="lag, pending and consumers per group; DLQ size")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--all", action="store_true",
                        help="also consumers idle for long with nothing pending (earlier runs)")
    status.set_defaults(func=run(_status))

    forget_parser = sub.add_parser(
        "forget", help="erase one person's content everywhere (destroys their content keys)")
    forget_parser.add_argument("identity", help="the person's phone (E.164, with +) or BSUID")
    forget_parser.add_argument("--compact", action="store_true",
                               help="then rewrite Redis's AOF and VACUUM FULL the touched tables "
                                    "so no old copy stays on disk")
    forget_parser.set_defaults(func=run(_forget))

    sub.add_parser("master-key", help="print a new master key for MECOVE_MASTER_KEY"
                   ).set_defaults(func=lambda _args: print(MasterKeys.generate_text()) or 0)
    sub.add_parser("rotate-master-key",
                   help="re-wrap every content key with MECOVE_MASTER_KEY (the old one in "
                        "MECOVE_PREVIOUS_MASTER_KEY)").set_defaults(func=run(_rotate))

    dlq = sub.add_parser("dlq", help="dead letters: list, show, retry, drop")
    actions = dlq.add_subparsers(dest="action", required=True)
    actions.add_parser("list").set_defaults(func=run(_dlq_list))
    show = actions.add_parser("show")
    show.add_argument("id")
    show.set_defaults(func=run(_dlq_show))
    for name, handler in (("retry", _dlq_retry), ("drop", _dlq_drop)):
        action = actions.add_parser(name)
        target = action.add_mutually_exclusive_group(required=True)
        target.add_argument("id", nargs="?")
        target.add_argument("--all", action="store_true")
        action.set_defaults(func=run(handler))


async def _recover_unreadable(settings: Settings, redis: Redis) -> None:
    """Messages kept raw that this version can read become messages before the rebuild."""
    connection = await asyncpg.connect(settings.database_url)
    event_log = EventLog.from_settings(settings, redis)
    try:
        report = await recover_unreadable(
            connection, IdentityLinks(redis, settings.key_prefix, event_log.writes), event_log)
    finally:
        await event_log.aclose()
        await connection.close()
    if report.examined:
        print(f"replay: {report.recovered} of {report.examined} unreadable messages are now "
              "readable and were appended as messages")


async def _replay(settings: Settings, args: argparse.Namespace) -> int:
    try:
        async with redis_client(settings, must_answer=True) as redis:
            if not args.dry_run:
                await _recover_unreadable(settings, redis)
            report = await replay(
                settings.database_url, redis, Keys.from_settings(settings),
                dry_run=args.dry_run, batch_size=args.batch_size,
                master=master_keys_for(settings.master_key, settings.previous_master_key))
    except KeyboardInterrupt:
        print("mecove: replay interrupted; live tables unchanged", file=sys.stderr)
        return 130
    types = ", ".join(f"{k} {v}" for k, v in report.events_by_type.items()) or "none"
    if args.dry_run:
        print(f"replay (dry run): would rebuild users, identities, messages, summaries from "
              f"{report.archived_events} archived events ({types}) and {report.tail_events} "
              f"stream entries past the projector checkpoint, then swap them in atomically.")
        return 0
    print(f"replay: applied {report.applied} events in {report.seconds:.2f}s "
          f"({types}); tables swapped")
    return 0


COMPACTED_TABLES = ("messages", "summaries", "identities", "unreadable_messages",
                    "event_archive", "user_keys")


async def _forget(settings: Settings, args: argparse.Namespace) -> int:
    require_master_key(settings)
    async with redis_client(settings, must_answer=True) as redis:
        report = await forget(redis, Keys.from_settings(settings),
                              content_keys_for(settings, redis), settings.database_url,
                              args.identity)
        rewritten = 0
        if args.compact:
            rewritten = await rewrite_append_only_files(redis)
            connection = await asyncpg.connect(settings.database_url)
            try:
                for table in COMPACTED_TABLES:
                    await connection.execute(f"VACUUM FULL {quote_identifier(table)}")
                await connection.execute("CHECKPOINT")
            finally:
                await connection.close()
    print(f"forget: user {report.user_id}: {report.keys_destroyed} content keys destroyed, "
          f"{report.messages_erased} messages and {report.summaries_erased} summaries erased, "
          f"{report.archive_rows_rewritten} plaintext archive rows rewritten, "
          f"{report.stream_entries_deleted} stream entries deleted, "
          f"{report.redis_keys_deleted} Redis keys deleted, "
          f"{report.unreadable_erased} unreadable messages erased"
          + (f"; AOF rewrite started on {rewritten} Redis node(s), tables vacuumed"
             if args.compact else ""))
    return 0


async def _rotate(settings: Settings, args: argparse.Namespace) -> int:
    require_master_key(settings)
    async with redis_client(settings, must_answer=True) as redis:
        rewrapped = await rotate_master_key(
            redis, Keys.from_settings(settings), settings.database_url,
            master_keys_for(settings.master_key, settings.previous_master_key))
    print(f"rotate-master-key: {rewrapped} content keys re-wrapped with MECOVE_MASTER_KEY")
    return 0


async def _trim(settings: Settings, args: argparse.Namespace) -> int:
    async with redis_client(settings, must_answer=True) as redis:
        deleted = await trim(redis, Keys.from_settings(settings), settings.database_url)
    print(f"trim: deleted {deleted} entries")
    return 0


def without_idle_consumers(status: LogStatus, idle_ms: int) -> tuple[LogStatus, int]:
    """``status`` without the consumers idle for over ``idle_ms`` with nothing pending, and
    how many were left out: the names of processes of earlier runs, which Redis keeps."""
    groups, hidden = [], 0
    for group in status.groups:
        kept = [c for c in group.consumers if c.pending or c.idle_ms <= idle_ms]
        hidden += len(group.consumers) - len(kept)
        groups.append(msgspec.structs.replace(group, consumers=kept))
    return msgspec.structs.replace(status, groups=groups), hidden


async def _status(settings: Settings, args: argparse.Namespace) -> int:
    async with redis_client(settings, must_answer=True) as redis:
        status = await read_status(redis, Keys.from_settings(settings), settings.database_url)
    hidden = 0
    if not args.all:  # a live consumer reads every block_ms; a reclaim waits this long
        status, hidden = without_idle_consumers(status, settings.visibility_timeout_ms)
    print(msgspec.json.encode(status).decode() if args.json else format_status(status))
    if hidden and not args.json:
        print(f"({hidden} consumers idle for over {settings.visibility_timeout_ms // 1000} s "
              "with nothing pending not shown: earlier runs; --all shows them)")
    return 0


async def _dlq_list(settings: Settings, args: argparse.Namespace) -> int:
    async with redis_client(settings, must_answer=True) as redis:
        letters = await list_dead_letters(redis, Keys.from_settings(settings))
    if not letters:
        print("no dead letters")
    for d in letters:
        print(f"{d.dlq_id}  group={d.group}  entry={d.entry_id}  type={d.event_type}  "
              f"attempts={d.attempts}  error={d.error}")
    return 0


async def _dlq_show(settings: Settings, args: argparse.Namespace) -> int:
    async with redis_client(settings, must_answer=True) as redis:
        found = await show_dead_letter(redis, Keys.from_settings(settings), args.id)
    if found is None:
        print(f"mecove: no dead letter {args.id}", file=sys.stderr)
        return 1
    for key, value in found.items():
        print(f"{key}: {value}")
    return 0


async def _each_target(settings: Settings, args: argparse.Namespace, action) -> int:  # type: ignore[no-untyped-def]
    keys = Keys.from_settings(settings)
    missing = 0
    async with redis_client(settings, must_answer=True) as redis:
        ids = [d.dlq_id for d in await list_dead_letters(redis, keys)] if args.all else [args.id]
        for dlq_id in ids:
            result = await action(redis, keys, dlq_id)
            if not result:
                missing += 1
                print(f"mecove: no dead letter {dlq_id}", file=sys.stderr)
            else:
                print(f"{dlq_id}: {result if isinstance(result, str) else 'done'}")
    return 1 if missing else 0


async def _dlq_retry(settings: Settings, args: argparse.Namespace) -> int:
    return await _each_target(settings, args, retry_dead_letter)


async def _dlq_drop(settings: Settings, args: argparse.Namespace) -> int:
    return await _each_target(settings, args, drop_dead_letter)
