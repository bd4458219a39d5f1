"""CPU per webhook of the ingress's own work, without an HTTP server: a diagnostic.

``answer_delivery`` (signature, parse, resolve, seal, append) is called directly with 32
deliveries in flight on the real Redis, after a warm-up in which every sender is seen once;
each round prints this process's CPU time per webhook. Without uvicorn and the load
generator on the same two cores, the figure moves less than ``bench.ingress``'s; for a count
that does not move with the machine's load, run it under callgrind twice (``--rounds 1`` and
``--rounds 3``) and divide the difference in instructions by ``2 × --webhooks``::

    python -m bench.ingress_app_path --webhooks 5000 --rounds 3
    valgrind --tool=callgrind python -m bench.ingress_app_path --webhooks 500 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence

import uvloop

from app.ingress.webhook_routes import answer_delivery
from app.platform.eventlog.append import EventLog
from app.platform.eventlog.content_crypto import MasterKeys
from app.platform.identities import IdentityLinks
from app.platform.redis_client import open_redis
from app.platform.sender_appends import SenderAppends
from app.platform.settings import Settings
from bench.numbered_messages import APP_SECRET, SignedBody, signed_bodies
from bench.scratch_space import DEFAULT_REDIS_URL, delete_matching

IN_FLIGHT = 32


async def _deliver(
    bodies: Sequence[SignedBody], settings: Settings, appends: SenderAppends
) -> None:
    waiting = list(bodies)

    async def one_connection() -> None:
        while waiting:
            body = waiting.pop()
            status, answer = await answer_delivery(body.body, body.signature, settings, appends)
            if status != 200:
                raise RuntimeError(f"webhook answered {status}: {answer!r}")

    await asyncio.gather(*(one_connection() for _ in range(IN_FLIGHT)))


async def measure(redis_url: str, webhooks: int, rounds: int, senders: int) -> None:
    """Warm up with ``webhooks`` deliveries, then print ``rounds`` rounds of as many."""
    prefix = f"bench-app-path-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        database_url="postgresql://unused/unused",
        redis_url=redis_url,
        key_prefix=prefix,
        whatsapp_app_secret=APP_SECRET,
        master_key=MasterKeys.generate_text(),
    )
    redis = open_redis(redis_url)
    event_log = EventLog.from_settings(settings, redis)
    appends = SenderAppends(IdentityLinks(redis, prefix), event_log)
    bodies = list(signed_bodies(prefix[-8:], 0, webhooks * (rounds + 1), senders=senders))
    try:
        await _deliver(bodies[:webhooks], settings, appends)
        for round_ in range(1, rounds + 1):
            chunk = bodies[webhooks * round_ : webhooks * (round_ + 1)]
            cpu, wall = time.process_time(), time.perf_counter()
            await _deliver(chunk, settings, appends)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(
                f"round {round_}: {cpu / webhooks * 1e6:,.1f} us CPU per webhook, "
                f"{webhooks / wall:,.0f} webhooks/s",
                flush=True,
            )
    finally:
        # One UNLINK per scan page: per-key round trips would add to the last round's CPU
        # figure under callgrind (the difference of two runs counts this clean-up too).
        await delete_matching(redis, f"{prefix}:*")
        await event_log.aclose()
        await redis.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=5_000, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--senders", type=int, default=1_000)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)
    senders = min(args.senders, args.webhooks)  # the warm-up sees every sender once
    uvloop.run(measure(args.redis_url, args.webhooks, args.rounds, senders))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
