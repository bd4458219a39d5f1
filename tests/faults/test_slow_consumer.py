"""A replier that is slow, not dead, keeps its work: no second LLM call, no false "in doubt".

The visibility timeout is for consumers that died. A live replier busy with an entry longer
than the timeout (a slow LLM) must not have it taken over and dead-lettered by another
replier as "in doubt" while the reply is, in fact, sent.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message
from app.platform.eventlog.keys import Keys
from app.platform.settings import Settings
from tests.faults.conftest import Fakes
from tests.faults.fake_processes import confirmed_send_bodies
from tests.faults.ledger import dead_letters, describe_dead_letters, group_caught_up
from tests.faults.pipeline import Pipeline
from tests.service import ingress

pytestmark = pytest.mark.slow

LLM_SECONDS = 3.0
VISIBILITY_MS = 1_000


async def test_a_slow_replier_is_not_robbed_of_its_message_by_a_live_peer(
    pipeline_settings: Settings, redis: Redis, fakes: Fakes, tmp_path: Path,
) -> None:
    settings = msgspec.structs.replace(pipeline_settings, visibility_timeout_ms=VISIBILITY_MS)
    await asyncio.to_thread(fakes.groq.post_json, "/_fake/config", {"latency_s": LLM_SECONDS})
    raw = encode(delivery(text_message("15550008801", "slow one", wamid="wamid.slow.1")))
    async with ingress(settings) as client:
        response = await client.post("/webhooks/whatsapp", content=raw,
                                     headers=signed_headers(raw, "test-app-secret"))
    assert response.status_code == 200
    keys = Keys(settings.key_prefix, settings.partitions)
    with Pipeline(settings, tmp_path) as pipeline:
        pipeline.start_consumer("replier")
        pipeline.start_consumer("replier")
        deadline = time.monotonic() + 30
        while True:
            sends = await asyncio.to_thread(confirmed_send_bodies, fakes.graph)
            settled = await group_caught_up(redis, keys, "replier")
            if (sends and settled) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(LLM_SECONDS + 1)  # let any second attempt run to its end
        assert pipeline.unclean_exits(pipeline.stop_all()) == {}
    sends = await asyncio.to_thread(confirmed_send_bodies, fakes.graph)
    llm_calls = len(await asyncio.to_thread(fakes.groq.get_json, "/_fake/requests"))
    letters = await dead_letters(redis, keys)
    print(f"\nslow replier: {len(sends)} send(s), {llm_calls} LLM call(s), "
          f"{len(letters)} dead letter(s): {describe_dead_letters(letters)}")
    assert len(sends) == 1
    assert letters == [], "a reply that was sent is dead-lettered as in doubt: " + \
        describe_dead_letters(letters)
    assert llm_calls == 1, "a live replier's message was taken over and answered again"
