"""``python -m bench.crypto_cost``: what sealing costs per message, in µs, on this machine.

Seals and opens a MessageReceived (text, raw payload) with one data key, as the ingress and
the projector do per message; also one data key's wrap and unwrap (once per user and process).

Then the projector's share: ``--events`` messages of ``--users`` senders (bench.numbered_messages,
logged and decoded as the projector reads them) folded into ``RowChanges`` in batches of the
projector's size, plaintext and sealed; for the sealed ones each batch first unwraps the keys it
names, as ``durable_keyring`` does with the rows ``user_keys`` gives (no query here). Printed as
CPU µs per event (process time, so a loaded machine inflates it less than wall time).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from app.platform.eventlog.content_crypto import (
    DataKey,
    MasterKeys,
    key_owners,
    new_data_key,
    open_event,
    seal_event,
)
from app.platform.eventlog.content_keys import keys_in_events
from app.platform.eventlog.entries import decode_event, encode_event
from bench.numbered_messages import received_events
from projections.projector import Projector
from projections.row_changes import RowChanges
from schema.events import AnyEvent, MessageReceived


def _per_call_us(action: Callable[[], object], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        action()
    return (time.perf_counter() - started) / rounds * 1e6


def _fold_cpu_us(
    events: list[AnyEvent], wrapped: dict[str, str], master: MasterKeys, batch: int
) -> float:
    """CPU µs per event to fold ``events`` into row changes batch by batch, unwrapping the keys
    of each batch first (``wrapped``: key id -> wrapped key, as ``user_keys`` holds them)."""
    started = time.process_time()
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        wanted = key_owners(chunk)
        ring = keys_in_events(chunk, master, wanted)
        ring.update({k: master.unwrap(wrapped[k], k) for k in wanted if k not in ring})
        changes = RowChanges(keyring=ring)
        for offset, event in enumerate(chunk, start):
            changes.add(0, f"{offset + 1}-0", event)
    return (time.process_time() - started) / len(events) * 1e6


def _projector_share(events: int, users: int, master: MasterKeys) -> dict[str, float]:
    """Folding a projector's batches, plaintext and sealed, in CPU µs per event."""
    plain: list[AnyEvent] = []
    sealed: list[AnyEvent] = []
    keys: dict[str, DataKey] = {}
    wrapped: dict[str, str] = {}
    for event in received_events("crypto-cost", 0, events, users=users):
        if event.user_id not in keys:
            keys[event.user_id], raw = new_data_key()
            wrapped[keys[event.user_id].key_id] = master.wrap(raw, keys[event.user_id].key_id)
        plain.append(decode_event(encode_event(event)))
        sealed.append(decode_event(encode_event(seal_event(event, keys[event.user_id]))))
    batch = Projector.min_batch_size
    return {
        f"fold into rows, plaintext ({events:,} events, {users:,} users)": _fold_cpu_us(
            plain, wrapped, master, batch
        ),
        f"fold into rows, sealed (keys unwrapped per batch of {batch:,})": _fold_cpu_us(
            sealed, wrapped, master, batch
        ),
    }


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--rounds", type=int, default=20_000)
    options.add_argument("--events", type=int, default=10_000)
    options.add_argument("--users", type=int, default=5_000)
    parsed = options.parse_args()
    rounds = parsed.rounds
    key, raw = new_data_key()
    master = MasterKeys(MasterKeys.parse(MasterKeys.generate_text()))
    event = MessageReceived(
        event_id="e",
        occurred_at=1,
        user_id="u",
        identity_id="i",
        message_id="m",
        channel="whatsapp",
        channel_user_key="+15550001111",
        source_message_id="wamid.x",
        content_type="text",
        text="a typical message of some sixty characters, give or take",
        client_timestamp=1,
        received_at=1,
        tracking_score=1.0,
        raw_payload={
            "from": "15550001111",
            "id": "wamid.x",
            "timestamp": "1",
            "type": "text",
            "text": {"body": "a typical message of some sixty characters"},
        },
    )
    sealed = seal_event(event, key)
    ring = {key.key_id: key}
    wrapped = master.wrap(raw, key.key_id)
    figures = {
        "encode entry, plaintext": _per_call_us(lambda: encode_event(event), rounds),
        "seal + encode entry": _per_call_us(lambda: encode_event(seal_event(event, key)), rounds),
        "open (projector, replier)": _per_call_us(lambda: open_event(sealed, ring), rounds),
        "wrap data key (once per user)": _per_call_us(lambda: master.wrap(raw, key.key_id), rounds),
        "unwrap data key (once per user and process)": _per_call_us(
            lambda: master.unwrap(wrapped, key.key_id), rounds
        ),
    }
    for name, micros in figures.items():
        print(f"{name:45s} {micros:8.1f} µs")
    extra = figures["seal + encode entry"] - figures["encode entry, plaintext"]
    print(f"{'sealing adds per message':45s} {extra:8.1f} µs")
    share = _projector_share(parsed.events, parsed.users, master)
    for name, micros in share.items():
        print(f"{name:70s} {micros:8.1f} µs CPU/event")
    plain_us, sealed_us = share.values()
    extra = sealed_us - plain_us
    print(f"{'opening adds per event in the projector':70s} {extra:8.1f} µs CPU/event")


if __name__ == "__main__":
    main()
