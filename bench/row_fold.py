"""Rows from sealed messages, no I/O: what ``RowChanges.add`` and the COPY records cost per event.

``--events`` sealed MessageReceived of ``--users`` senders (the bench's numbered messages),
logged and decoded as the consumers decode them, folded into one ``RowChanges`` per round
(as a projector batch or a replay page), then turned into COPY records; prints the best
round's CPU per event. The set-up is frozen out of collections. For instruction counts, run
it under ``valgrind --tool=callgrind`` with ``--rounds 1`` and ``--rounds 3``: half the
difference over ``--events`` is one round's instructions per event.

    python -m bench.row_fold --events 20000 --users 2000
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Sequence

from app.platform.eventlog.content_crypto import DataKey, new_data_key, seal_event
from app.platform.eventlog.entries import BODY, decode_event, encode_event
from bench.numbered_messages import received_events
from projections.row_changes import RowChanges
from projections.write_rows import _ARCHIVE, _KINDS


def run(events: int, users: int, rounds: int) -> tuple[float, float]:
    """(fold, records) CPU seconds per event, the best of ``rounds``."""
    plain = received_events("fold", 0, events, users)
    keys: dict[str, DataKey] = {}
    for event in plain:
        if event.user_id not in keys:
            keys[event.user_id] = new_data_key()[0]
    ring = {key.key_id: key for key in keys.values()}
    entries = []
    for n, event in enumerate(plain):
        fields = encode_event(seal_event(event, keys[event.user_id]))
        entries.append((f"{1_764_000_000_000 + n}-0", decode_event(fields), fields[BODY]))
    gc.collect()
    gc.freeze()
    best = (float("inf"), float("inf"))
    for _ in range(rounds):
        started = time.process_time()
        changes = RowChanges(keyring=ring)
        for entry_id, event, body in entries:
            changes.add(0, entry_id, event, body)
        folded = time.process_time()
        for kind in (*_KINDS, _ARCHIVE):
            kind.records(changes)
        best = min(best, (folded - started, time.process_time() - folded))
    gc.unfreeze()
    return best[0] / events, best[1] / events


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    fold, records = run(args.events, args.users, args.rounds)
    print(f"rows of {args.events} sealed messages: RowChanges.add {fold * 1e6:.2f} us per "
          f"event, COPY records {records * 1e6:.2f} us per event")


if __name__ == "__main__":
    main()
