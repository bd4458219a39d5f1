"""Inputs the ingress accepts (200) must reach the projection, and never stop it.

One case per hostile-but-well-formed text message that the fuzzer turned up. Each is posted
with a plain message after it; both must end up as rows, with nothing dead-lettered — except
a wamid that Meta could never send (NUL inside, or longer than the column), which the ingress
acknowledges and ignores like any other message it does not take: no event, no row.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message
from app.platform.eventlog.keys import Keys
from app.platform.settings import Settings
from projections.projector import Projector
from tests.faults.ledger import dead_letters, describe_dead_letters
from tests.service import consumers, ingress

WAIT_S = 5.0


def _with_raw_field(message: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**message, key: value}


CASES = {
    "a NUL character in the text": text_message("15550007001", "a\u0000b",
                                                wamid="wamid.poison.nul-text"),
    "a NUL character in the wamid": text_message("15550007002", "hi",
                                                 wamid="wamid.poison.nul\u0000id"),
    "a NUL character in another field of the message": _with_raw_field(
        text_message("15550007003", "hi", wamid="wamid.poison.nul-raw"), "note", "x\u0000y"),
    "a wamid of 300 characters": text_message("15550007004", "hi",
                                              wamid="wamid.poison." + "w" * 288),
    "a timestamp after the year 9999": text_message("15550007005", "hi",
                                                    wamid="wamid.poison.future", ts=2**40),
    "a timestamp before the year 1": text_message("15550007006", "hi",
                                                  wamid="wamid.poison.past", ts=-(2**40)),
}
# No wamid Meta would send: kept raw as a MessageUnreadable, never as a message row.
KEPT_RAW_AT_THE_INGRESS = {"a NUL character in the wamid", "a wamid of 300 characters"}


async def _rows(database_url: str) -> set[str]:
    connection = await asyncpg.connect(database_url)
    try:
        return {r["source_message_id"]
                for r in await connection.fetch("SELECT source_message_id FROM messages")}
    finally:
        await connection.close()


@pytest.mark.parametrize("case", list(CASES))
async def test_an_accepted_message_is_projected_and_does_not_stop_the_projector(
    settings: Settings, redis: Redis, case: str,
) -> None:
    hostile = CASES[case]
    follower = text_message("15550007999", "after the hostile one", wamid="wamid.poison.after")
    answers = []
    async with ingress(settings) as client:
        for message in (hostile, follower):
            raw = encode(delivery(message))
            response = await client.post("/webhooks/whatsapp", content=raw,
                                         headers=signed_headers(raw, "test-app-secret"))
            answers.append(response.status_code)
    assert answers == [200, 200]
    deadline = time.monotonic() + WAIT_S
    async with consumers(settings, [Projector.from_settings(settings)]):
        while follower["id"] not in (rows := await _rows(settings.database_url)):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    letters = await dead_letters(redis, Keys(settings.key_prefix, settings.partitions))
    assert follower["id"] in rows, f"the projector stopped at {case} and applies nothing after it"
    assert letters == [], f"accepted, then dead-lettered: {describe_dead_letters(letters)}"
    if case in KEPT_RAW_AT_THE_INGRESS:
        stream = Keys(settings.key_prefix, settings.partitions).stream(0)
        kinds = sorted(fields[b"type"] for _, fields in await redis.xrange(stream)
                       if fields[b"type"] != b"UserKeyIssued")  # key bookkeeping
        assert kinds == [b"MessageReceived", b"MessageUnreadable"]
        assert hostile["id"] not in rows
    else:
        assert hostile["id"] in rows
