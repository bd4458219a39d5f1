"""The ingress's CPU per webhook at a low, paced rate, where no two deliveries share a batch.

At saturation many deliveries share each Redis script call; at a few hundred per second each
pays its own call, wake-ups and batch set-up alone. ``mecove api`` (one worker, real Redis)
is warmed up with ``--rate × --seconds`` deliveries at full speed (every sender seen once),
then sent as many again at ``--rate`` per second, spread evenly over ``--connections``
keep-alive connections; the api's own CPU time (user + system, from /proc) over the paced
part is divided by the deliveries::

    python -m bench.ingress_low_rate --rate 200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx

from app.devtools.ports import free_port
from bench.numbered_messages import APP_SECRET, WEBHOOK_PATH, SignedBody, signed_bodies
from bench.processes import (
    ProcessSet,
    clean_env,
    cpu_seconds,
    mecove_command,
    start_py_spy,
    wait_for_http,
    work_directory,
)
from bench.scratch_space import DEFAULT_ADMIN_DATABASE_URL, DEFAULT_REDIS_URL, delete_matching_at


async def _post(client: httpx.AsyncClient, url: str, body: SignedBody) -> None:
    answer = await client.post(url, content=body.body, headers={
        "X-Hub-Signature-256": body.signature, "content-type": "application/json"})
    if answer.status_code != 200:
        raise RuntimeError(f"answered {answer.status_code}: {answer.text}")


async def _paced(client: httpx.AsyncClient, url: str, bodies: Sequence[SignedBody],
                 rate: float, connections: int) -> None:
    """``bodies`` at ``rate`` per second: connection i sends every ``connections / rate`` s."""
    interval = connections / rate

    async def one_connection(offset: int) -> None:
        start = time.monotonic() + offset / rate
        for n, body in enumerate(bodies[offset::connections]):
            delay = start + n * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await _post(client, url, body)

    await asyncio.gather(*(one_connection(i) for i in range(connections)))


async def measure(args: argparse.Namespace) -> float:
    """CPU µs of the api per paced webhook."""
    port = free_port()
    prefix = f"bench-low-rate-{uuid.uuid4().hex[:8]}"
    n = int(args.rate * args.seconds)
    bodies = list(signed_bodies(prefix[-8:], 0, 2 * n, senders=min(n, args.senders)))
    env = clean_env({"DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url,
                     "MECOVE_PORT": str(port), "MECOVE_KEY_PREFIX": prefix,
                     "WHATSAPP_APP_SECRET": APP_SECRET})
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    try:
        with work_directory("low-rate") as folder:
            async with ProcessSet(folder) as processes:
                api = await processes.start("api", mecove_command("api", "--host", "127.0.0.1"),
                                            env)
                await wait_for_http(api, f"http://127.0.0.1:{port}/health")
                limits = httpx.Limits(max_connections=args.connections)
                async with httpx.AsyncClient(limits=limits, timeout=30) as client:
                    waiting = list(bodies[:n])

                    async def warm() -> None:
                        while waiting:
                            await _post(client, url, waiting.pop())

                    await asyncio.gather(*(warm() for _ in range(args.connections)))
                    spy = None if args.py_spy is None else await start_py_spy(
                        processes, api, args.py_spy)
                    before = cpu_seconds(api.pid)
                    await _paced(client, url, bodies[n:], args.rate, args.connections)
                    after = cpu_seconds(api.pid)
                    if spy is not None:
                        await processes.stop(spy, sig=signal.SIGINT)
                if before is None or after is None:
                    raise RuntimeError("the api exited")
                return (after - before) / n * 1e6
    finally:
        await delete_matching_at(args.redis_url, f"{prefix}:*")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--senders", type=int, default=500)
    parser.add_argument("--py-spy", type=Path, default=None,
                        help="record the api's paced part with py-spy into this file (raw stacks)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--database-url", default=DEFAULT_ADMIN_DATABASE_URL,
                        help="the ingress does not query it while answering webhooks")
    args = parser.parse_args(argv)
    for round_ in range(1, args.rounds + 1):
        cpu_us = asyncio.run(measure(args))
        print(f"round {round_}: api {cpu_us:,.0f} us CPU per webhook at {args.rate:g}/s",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
