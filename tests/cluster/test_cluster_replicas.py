"""``MECOVE_REDIS_MIN_REPLICAS=1`` beyond the append: identity links and reply claims.

An identity link lives on the master of the ``{ids}`` tag, a reply claim on its message's
partition; with that master's only replica stopped, neither may count: the ingress answers
503 (nothing appended, Meta redelivers) and the replier does not send (it defers the reply).
With the replica back, both go through, once.
"""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec
import pytest
from redis.asyncio import RedisCluster

from app.devtools.private_cluster import PrivateCluster
from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message
from app.platform.eventlog.entries import as_text, decode_event
from app.platform.eventlog.keys import Keys
from app.platform.identities import IdentityKeys, Sender, first_user_id
from app.platform.settings import Settings
from consumers.replier.reply_outcome import ReplyOutcomes
from tests.cluster.conftest import replica_stopped
from tests.fakes.graph_api import FakeGraphApi
from tests.integration.consumer_helpers import replier
from tests.service import consumers, eventually, ingress

pytestmark = pytest.mark.slow

SECRET = "test-app-secret"


async def _post(client, sender: str, wamid: str) -> int:  # type: ignore[no-untyped-def]
    raw = encode(delivery(text_message(sender, "hello", wamid=wamid)))
    response = await client.post("/webhooks/whatsapp", content=raw,
                                 headers=signed_headers(raw, SECRET))
    return int(response.status_code)


async def _received(redis: RedisCluster, settings: Settings) -> list:
    found = []
    for stream in Keys.from_settings(settings).streams():
        found += [decode_event(f) for _, f in await redis.xrange(stream)
                  if f.get(b"type") == b"MessageReceived"]
    return found


def _user_of(sender: str) -> str:
    return first_user_id(Sender(phone=f"+{sender}", bsuid=None))


def _sender_off(cluster: PrivateCluster, keys: Keys, master: int, base: int) -> str:
    """A first-time sender whose partition is not on ``master``."""
    for number in range(base, base + 100):
        sender = f"1555{number:07d}"
        stream = keys.stream(keys.partition_of(_user_of(sender)))
        if cluster.master_of(stream) != master:
            return sender
    raise LookupError("no sender off that master")


def _durable(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, redis_min_replicas=1, redis_wait_timeout_ms=300)


async def test_an_identity_link_its_master_cannot_replicate_answers_503_until_the_replica_is_back(
    settings: Settings, redis: RedisCluster, cluster: PrivateCluster
) -> None:
    settings = _durable(settings)
    links = IdentityKeys(settings.key_prefix)
    links_master = cluster.master_of(links.unused())
    # The message's own partition is on another master, whose replica is up: only the link
    # can refuse it.
    sender = _sender_off(cluster, Keys.from_settings(settings), links_master, 700)
    with replica_stopped(cluster, links_master):
        async with ingress(settings) as http:
            refused = await _post(http, sender, "wamid.link")
        appended_while_refused = await _received(redis, settings)
    async with ingress(settings) as http:  # Meta redelivers
        accepted = await _post(http, sender, "wamid.link")
    assert refused == 503
    assert appended_while_refused == []
    assert accepted == 200
    [event] = await _received(redis, settings)
    assert event.user_id == _user_of(sender)
    assert as_text(await redis.get(links.phone(f"+{sender}"))) == event.user_id


async def test_a_reply_claim_its_master_cannot_replicate_is_not_sent_until_the_replica_is_back(
    reply_settings: Settings, redis: RedisCluster, pool: asyncpg.Pool, graph: FakeGraphApi,
    cluster: PrivateCluster,
) -> None:
    settings = _durable(reply_settings)
    keys = Keys.from_settings(settings)
    links_master = cluster.master_of(IdentityKeys(settings.key_prefix).unused())
    sender = _sender_off(cluster, keys, links_master, 800)
    partition = keys.partition_of(_user_of(sender))
    async with ingress(settings) as http:
        assert await _post(http, sender, "wamid.claim") == 200
    [message] = await _received(redis, settings)
    outcome_key = ReplyOutcomes(redis, keys).key(message.user_id, message.message_id)
    deferrals = keys.key(partition, "deferred:replier")
    [entry_id] = [i for i, f in await redis.xrange(keys.stream(partition))
                  if f[b"type"] == b"MessageReceived"]

    async def deferred_twice() -> bool:  # tried, refused, and tried again later
        count = await redis.hget(deferrals, entry_id)
        return count is not None and int(count) >= 2

    with replica_stopped(cluster, cluster.master_of(keys.stream(partition))):
        async with consumers(settings, [replier(settings, pool, redis)]):
            await eventually(deferred_twice, timeout=30)
            sent_while_refused = list(graph.sent())
            claim_while_refused = await redis.get(outcome_key)
    async with consumers(settings, [replier(settings, pool, redis)]):
        await asyncio.to_thread(graph.wait_for_sends, 1, 30)
        await eventually(lambda: redis.get(outcome_key), timeout=10)
    assert sent_while_refused == []
    assert claim_while_refused is None  # released: a later attempt is not "in doubt"
    assert [s["to"] for s in graph.sent()] == [f"+{sender}"]
    assert as_text(await redis.get(outcome_key)).startswith("sent:")
