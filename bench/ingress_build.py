"""Instructions of the ingress's build step per webhook: body bytes -> script arguments.

What the ingress does per signed delivery between the body and the packed script call of a
known sender (``SenderAppends._append_now``): ``parse_webhook``, ``events_from_texts`` for the
remembered resolution, the resolve step's inputs, sealing and the append step's inputs
(``EventLog.add_sealed_inputs``), ``packed_args``. No Redis, no HTTP: the senders' resolutions
and content keys are put in the caches the ingress would have filled. Run it under callgrind
twice and divide the difference by the extra webhooks (a count that does not move with load)::

    valgrind --tool=callgrind --callgrind-out-file=/tmp/b1 python -m bench.ingress_build --rounds 1
    valgrind --tool=callgrind --callgrind-out-file=/tmp/b3 python -m bench.ingress_build --rounds 3

Without valgrind it prints CPU µs per webhook (``time.process_time``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from redis.asyncio import Redis

from app.ingress.parse_webhook import events_from_texts, parse_webhook
from app.platform.eventlog.append import EventLog
from app.platform.eventlog.content_crypto import MasterKeys, new_data_key
from app.platform.eventlog.content_keys import ContentKeys
from app.platform.eventlog.keys import Keys
from app.platform.eventlog.lua import packed_args
from app.platform.identities import IdentityLinks, first_sighting
from bench.numbered_messages import signed_bodies

RECEIVED_AT_MS = 1_764_000_000_000


def _build(body: bytes, links: IdentityLinks, log: EventLog) -> bytes:
    """One delivery's script arguments, as ``SenderAppends._append_now`` makes them."""
    texts = parse_webhook(body).texts
    guesses = [links.guess(t.sender) for t in texts]
    events = events_from_texts(texts, RECEIVED_AT_MS, guesses)  # type: ignore[arg-type]
    keys: list[str] = []
    values: list[str | int] = []
    for text, guess in zip(texts, guesses, strict=True):
        assert guess is not None
        links.add_inputs(text.sender, keys, values)
        values += [guess.user_id, "linked"]
    for event in events:
        partition = log.keys.partition_of(event.user_id)
        key = log.cached_key(event.user_id)
        assert key is not None and key is not False
        log.add_sealed_inputs(event, key, partition, keys, values)
    return packed_args(values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--webhooks", type=int, default=2_000, help="per round")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--senders", type=int, default=500)
    args = parser.parse_args(argv)
    redis = Redis()  # never connected: only scripts are registered
    keys = Keys("bench-build", 16)
    content = ContentKeys(redis, keys, MasterKeys(MasterKeys.parse(MasterKeys.generate_text())))
    log = EventLog(redis, keys, content=content)
    links = IdentityLinks(redis, "bench-build")
    bodies = [b.body for b in signed_bodies("build", 0, args.webhooks, senders=args.senders)]
    for body in bodies:  # what the warm-up of a real ingress leaves in its caches
        for text in parse_webhook(body).texts:
            resolution = first_sighting(text.sender)
            links._known[(text.sender.bsuid, text.sender.phone)] = resolution
            content._writing.setdefault(resolution.user_id, new_data_key()[0])
    for body in bodies:
        _build(body, links, log)  # warm-up round (caches of ids, phones)
    for _ in range(args.rounds):
        cpu = time.process_time()
        for body in bodies:
            _build(body, links, log)
        cpu = time.process_time() - cpu
        print(f"{cpu / len(bodies) * 1e6:.2f} us CPU per webhook", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
