"""``python -m bench.crypto_cost``: what sealing costs per message, in µs, on this machine.

Seals and opens a MessageReceived (text, raw payload) with one data key, as the ingress and
the projector do per message; also one data key's wrap and unwrap (once per user and process).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from app.platform.eventlog.content_crypto import (
    MasterKeys,
    new_data_key,
    open_event,
    seal_event,
)
from app.platform.eventlog.entries import encode_event
from schema.events import MessageReceived


def _per_call_us(action: Callable[[], object], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        action()
    return (time.perf_counter() - started) / rounds * 1e6


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--rounds", type=int, default=20_000)
    rounds = options.parse_args().rounds
    key, raw = new_data_key()
    master = MasterKeys(MasterKeys.parse(MasterKeys.generate_text()))
    event = MessageReceived(
        event_id="e", occurred_at=1, user_id="u", identity_id="i", message_id="m",
        channel="whatsapp", channel_user_key="+15550001111", source_message_id="wamid.x",
        content_type="text", text="a typical message of some sixty characters, give or take",
        client_timestamp=1, received_at=1, tracking_score=1.0,
        raw_payload={"from": "15550001111", "id": "wamid.x", "timestamp": "1", "type": "text",
                     "text": {"body": "a typical message of some sixty characters"}})
    sealed = seal_event(event, key)
    ring = {key.key_id: key}
    wrapped = master.wrap(raw, key.key_id)
    figures = {
        "encode entry, plaintext": _per_call_us(lambda: encode_event(event), rounds),
        "seal + encode entry": _per_call_us(lambda: encode_event(seal_event(event, key)), rounds),
        "open (projector, replier)": _per_call_us(lambda: open_event(sealed, ring), rounds),
        "wrap data key (once per user)": _per_call_us(
            lambda: master.wrap(raw, key.key_id), rounds),
        "unwrap data key (once per user and process)": _per_call_us(
            lambda: master.unwrap(wrapped, key.key_id), rounds),
    }
    for name, micros in figures.items():
        print(f"{name:45s} {micros:8.1f} µs")
    extra = figures["seal + encode entry"] - figures["encode entry, plaintext"]
    print(f"{'sealing adds per message':45s} {extra:8.1f} µs")


if __name__ == "__main__":
    main()
