"""Instructions per signed webhook of a whole server under callgrind: ingress vs bare Litestar
(and, as info, a raw ASGI app without framework: the floor of the server itself).

On a loaded machine CPU seconds per request move more than a change to the ingress does;
instructions do not. Each target runs under ``valgrind --tool=callgrind`` with the options of
``mecove api``: after a warm-up of ``--requests`` deliveries (every sender seen once), the
counters are zeroed (``callgrind_control -z``), ``--requests`` more are sent by 32
connections, and the counters dumped (``callgrind_control -d``). User-space instructions only:
the kernel's share (socket reads and writes) is not counted, for either target::

    python -m bench.server_instructions --requests 1000 [--targets raw bare ingress]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
from redis.asyncio import Redis

from app.devtools.ports import free_port
from bench.numbered_messages import APP_SECRET, WEBHOOK_PATH, SignedBody, signed_bodies
from bench.processes import bare_litestar_command, clean_env, raw_asgi_command
from bench.scratch_space import DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, delete_matching

CONNECTIONS = 32
STARTUP_S = 600  # a server under callgrind starts about fifty times slower


def _command(
    target: str, port: int, prefix: str, args: argparse.Namespace
) -> tuple[list[str], dict[str, str]]:
    python = sys.executable
    if target == "ingress":
        env = clean_env(
            {
                "DATABASE_URL": args.database_url,
                "REDIS_URL": args.redis_url,
                "MECOVE_PORT": str(port),
                "MECOVE_KEY_PREFIX": prefix,
                "WHATSAPP_APP_SECRET": APP_SECRET,
            }
        )
        return [python, "-m", "app.cli", "api", "--host", "127.0.0.1"], env
    if target == "raw":
        return raw_asgi_command(port), clean_env({})
    return bare_litestar_command(port), clean_env({})


async def _send(client: httpx.AsyncClient, url: str, bodies: Sequence[SignedBody]) -> None:
    waiting = list(bodies)

    async def one_connection() -> None:
        while waiting:
            body = waiting.pop()
            headers = {"X-Hub-Signature-256": body.signature, "content-type": "application/json"}
            try:
                answer = await client.post(url, content=body.body, headers=headers)
            except (httpx.ReadError, httpx.RemoteProtocolError):
                # uvicorn closes a connection idle past its keep-alive (5 s), which the slow
                # server under valgrind reaches while the counters are zeroed: the request was
                # not read, so it is sent again on a new connection.
                answer = await client.post(url, content=body.body, headers=headers)
            if answer.status_code != 200:
                raise RuntimeError(f"answered {answer.status_code}: {answer.text}")

    await asyncio.gather(*(one_connection() for _ in range(CONNECTIONS)))


async def _wait_until_up(
    client: httpx.AsyncClient, url: str, server: asyncio.subprocess.Process
) -> None:
    for _ in range(STARTUP_S):
        if server.returncode is not None:
            raise RuntimeError("the server exited while starting")
        try:
            if (await client.get(url)).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(1)
    raise RuntimeError("the server did not start")


async def _callgrind_control(option: str, pid: int) -> None:
    control = await asyncio.create_subprocess_exec(
        "callgrind_control", option, str(pid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if await control.wait() != 0:
        raise RuntimeError(f"callgrind_control {option} failed")


def add_child_options(parser: argparse.ArgumentParser, measured: str) -> None:
    """The options of a bench run through ``counted_child``: ``--no-valgrind``, ``--keep``
    and the child's own (hidden) ``--child`` and ``--prefix``."""
    parser.add_argument("--no-valgrind", action="store_true",
                        help=f"print the CPU time of the {measured} only")
    parser.add_argument("--keep", type=Path,
                        help="write callgrind's files to this folder (callgrind_annotate)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)


async def counted_child(argv: list[str], out: Path | None) -> tuple[dict[str, object], int]:
    """Run a bench child (``argv``) that prints ``ready``, waits for a line, does the measured
    work, prints its report (one JSON line) and waits for a line again; under callgrind
    (``out``: its file; None: not under valgrind) with the counters zeroed at the ``go`` and
    dumped after the report. Returns the report and the instructions counted (0 without)."""
    if out is not None:
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                f"--log-file={out}.log", *argv]
    process = await asyncio.create_subprocess_exec(
        *argv, env=clean_env({}), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    try:
        if (await process.stdout.readline()).strip() != b"ready":
            raise RuntimeError("the child did not get ready")
        if out is not None:
            await _callgrind_control("-z", process.pid)
        process.stdin.write(b"go\n")
        await process.stdin.drain()
        report = json.loads(await process.stdout.readline())
        if out is not None:
            await _callgrind_control("-d", process.pid)
        process.stdin.write(b"end\n")
        await process.stdin.drain()
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return report, (_dumped_total(out) if out is not None else 0)


def _dumped_total(out: Path) -> int:
    dumps = [p for p in out.parent.glob(out.name + ".*") if p.suffix != ".log"]
    first = min(dumps, key=lambda p: p.stat().st_mtime)
    for line in first.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in {first}")


async def instructions_per_request(target: str, args: argparse.Namespace, folder: Path) -> int:
    """Instructions the server spent per delivery, counted over ``args.requests`` of them."""
    port = free_port()
    prefix = f"bench-instructions-{uuid.uuid4().hex[:8]}"
    argv, env = _command(target, port, prefix, args)
    out = folder / f"{target}.callgrind"
    with (folder / f"{target}.log").open("wb") as log:
        server = await asyncio.create_subprocess_exec(
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            *argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        limits = httpx.Limits(max_connections=CONNECTIONS)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            await _wait_until_up(client, f"http://127.0.0.1:{port}/health", server)
            n = args.requests
            bodies = list(signed_bodies(prefix[-8:], 0, 2 * n, senders=min(n, args.senders)))
            url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
            await _send(client, url, bodies[:n])
            await _callgrind_control("-z", server.pid)  # zero the counters
            await _send(client, url, bodies[n:])
            await _callgrind_control("-d", server.pid)  # dump them
    finally:
        server.terminate()
        await server.wait()
    if target == "ingress":
        await _delete_keys(args.redis_url, prefix)
    return _dumped_total(out) // args.requests


async def _delete_keys(redis_url: str, prefix: str) -> None:
    client = Redis.from_url(redis_url)
    try:
        await delete_matching(client, f"{prefix}:*")
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--senders", type=int, default=500)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--targets", nargs="+", choices=("raw", "bare", "ingress"),
                        default=["raw", "bare", "ingress"])
    parser.add_argument("--keep", type=Path, default=None,
                        help="a folder to keep the callgrind dumps in (for callgrind_annotate)")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_ADMIN_DATABASE_URL,
        help="the ingress does not query it while answering webhooks",
    )
    args = parser.parse_args(argv)
    with TemporaryDirectory(prefix="mecove-instructions-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        counts = {
            target: asyncio.run(instructions_per_request(target, args, folder))
            for target in args.targets
        }
    if "raw" in counts:
        print(f"raw ASGI:      {counts['raw']:,} instructions per request (info: no framework)")
    if "bare" in counts:
        print(f"bare Litestar: {counts['bare']:,} instructions per request")
    if "ingress" in counts:
        ratio = (f" ({counts['ingress'] / counts['bare']:.2f}x bare; budget <= 1.4x)"
                 if "bare" in counts else "")
        print(f"ingress:       {counts['ingress']:,} instructions per request{ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
