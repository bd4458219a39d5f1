"""MeCove on a private Redis Cluster (three masters, three replicas), six partitions.

The core runs unchanged on it (append, dedupe, projector, replier, summarizer, replay, DLQ
retry, status); ``MECOVE_REDIS_MIN_REPLICAS=1`` refuses (503) what a lone master cannot
replicate; and a master SIGKILLed under traffic loses no acknowledged webhook and sends no
reply twice. One module, so the cluster starts once.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time

import asyncpg
import msgspec
import pytest
from redis.asyncio import RedisCluster

from app.devtools.private_cluster import PrivateCluster
from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message
from app.operations.dead_letters import (
    drop_dead_letter,
    list_dead_letters,
    retry_dead_letter,
    show_dead_letter,
)
from app.operations.log_status import read_status
from app.platform.eventlog.entries import decode_event
from app.platform.eventlog.keys import Keys
from app.platform.identities import IdentityKeys, Sender, first_user_id
from app.platform.redis_client import connect
from app.platform.settings import Settings
from consumers.summarizer.summary_handler import build_summary_handler
from projections.projector import Projector
from projections.replay import replay
from tests.cluster.conftest import replica_stopped
from tests.fakes.graph_api import FakeGraphApi
from tests.integration.consumer_helpers import fetch_rows, master_of, replier
from tests.service import consumers, eventually, ingress

pytestmark = pytest.mark.slow

SECRET = "test-app-secret"


async def _post(client, sender: str, text: str, wamid: str) -> int:  # type: ignore[no-untyped-def]
    raw = encode(delivery(text_message(sender, text, wamid=wamid)))
    response = await client.post("/webhooks/whatsapp", content=raw,
                                 headers=signed_headers(raw, SECRET))
    return int(response.status_code)


async def _entries(redis: RedisCluster, settings: Settings, kind: str) -> list:
    keys = Keys.from_settings(settings)
    found = []
    for stream in keys.streams():
        found += [decode_event(f) for _, f in await redis.xrange(stream)
                  if f.get(b"type") == kind.encode()]
    return found


async def _drained(redis: RedisCluster, settings: Settings, group: str) -> bool:
    """Every partition's stream fully read and acknowledged by ``group``."""
    for stream in Keys.from_settings(settings).streams():
        tail = await redis.xrevrange(stream, count=1)
        if not tail:
            continue
        info = {g["name"].decode(): g for g in await redis.xinfo_groups(stream)}
        if group not in info or info[group]["pending"] or \
                info[group]["last-delivered-id"] != tail[0][0]:
            return False
    return True


def _senders(count: int, base: int) -> list[str]:
    return [f"1555{base + i:07d}" for i in range(count)]


async def test_a_cluster_node_url_gives_the_cluster_client_and_streams_on_several_masters(
    settings: Settings, redis: RedisCluster, cluster: PrivateCluster
) -> None:
    client = await connect(settings.redis_url)
    try:
        assert isinstance(client, RedisCluster)
    finally:
        await client.aclose()
    async with ingress(settings) as http:
        for index, sender in enumerate(_senders(30, 100)):
            assert await _post(http, sender, "hello", f"wamid.spread{index}") == 200
    keys = Keys.from_settings(settings)
    filled = [s for s in keys.streams() if await redis.xlen(s)]
    masters = {cluster.master_of(s) for s in filled}
    assert len(filled) == 6 and len(masters) == 3
    assert len(await _entries(redis, settings, "MessageReceived")) == 30


async def test_the_core_runs_on_the_cluster(
    reply_settings: Settings, redis: RedisCluster, pool: asyncpg.Pool, graph: FakeGraphApi
) -> None:
    settings = reply_settings
    senders = _senders(24, 200)
    async with ingress(settings) as http:
        for index, sender in enumerate(senders):
            for _ in range(2):  # every delivery twice: the second is a duplicate
                assert await _post(http, sender, f"hi {index}", f"wamid.core{index}") == 200
    assert len(await _entries(redis, settings, "MessageReceived")) == 24
    handlers = [Projector.from_settings(settings),
                replier(settings, pool, redis),
                build_summary_handler(settings, pool, redis)]
    async with consumers(settings, handlers):
        await asyncio.to_thread(graph.wait_for_sends, 24, 30)
        for group in ("projector", "replier", "summarizer"):
            await eventually(lambda g=group: _drained(redis, settings, g), timeout=30)
        await eventually(lambda: _drained(redis, settings, "projector"), timeout=30)
    assert sorted(s["to"] for s in graph.sent()) == sorted(f"+{s}" for s in senders)
    replied = await fetch_rows(settings.database_url,
                          "SELECT count(*) AS n FROM messages WHERE replied_at IS NOT NULL")
    assert replied[0]["n"] == 24
    assert len(await _entries(redis, settings, "SummaryCreated")) == 24  # one per user

    status = await read_status(redis, Keys.from_settings(settings), settings.database_url)
    assert [p.length for p in status.partitions] == \
        [await redis.xlen(stream) for stream in Keys.from_settings(settings).streams()]
    assert {"projector", "replier", "summarizer"} <= {g.group for g in status.groups}
    assert all(g.pending == 0 for g in status.groups)

    before = await fetch_rows(settings.database_url, "SELECT id, text FROM messages ORDER BY id")
    report = await replay(settings.database_url, redis, Keys.from_settings(settings),
                          master=master_of(settings))
    assert report.swapped
    assert await fetch_rows(settings.database_url, "SELECT id, text FROM messages ORDER BY id") \
        == before


async def test_a_dead_lettered_reply_is_retried_or_dropped_on_its_partition(
    reply_settings: Settings, redis: RedisCluster, pool: asyncpg.Pool, graph: FakeGraphApi
) -> None:
    settings = reply_settings
    keys = Keys.from_settings(settings)
    graph.fail_always(400, 131047)
    async with ingress(settings) as http:
        assert await _post(http, "15550006001", "hello", "wamid.dlq") == 200
        assert await _post(http, "15550006002", "drop me", "wamid.dlq.drop") == 200
    async with consumers(settings, [replier(settings, pool, redis)]):
        await eventually(lambda: _has_letters(redis, keys, 2))
        graph.clear()
        kept, dropped = await list_dead_letters(redis, keys)
        assert kept.group == "replier" and "131047" in kept.error
        shown = await show_dead_letter(redis, keys, kept.dlq_id)
        assert shown is not None and "131047" in shown["error"]
        assert await drop_dead_letter(redis, keys, dropped.dlq_id)
        assert not await drop_dead_letter(redis, keys, dropped.dlq_id)  # already gone
        assert await retry_dead_letter(redis, keys, kept.dlq_id)
        await asyncio.to_thread(graph.wait_for_sends, 1, 10)
        await eventually(lambda: _drained(redis, settings, "replier"))
    [sent] = graph.sent()  # the retried letter's reply only
    assert sent["to"] in {"+15550006001", "+15550006002"}
    assert await list_dead_letters(redis, keys) == []


async def _has_letters(redis: RedisCluster, keys: Keys, count: int) -> bool:
    return len(await list_dead_letters(redis, keys)) >= count


async def test_with_one_required_replica_a_master_without_replica_answers_503(
    settings: Settings, redis: RedisCluster, cluster: PrivateCluster
) -> None:
    settings = msgspec.structs.replace(settings, redis_min_replicas=1,
                                       redis_wait_timeout_ms=300)
    keys = Keys.from_settings(settings)
    links_master = cluster.master_of(IdentityKeys(settings.key_prefix).unused())
    lone_master = next(m for m in cluster.masters() if m != links_master)  # links stay durable
    senders = _senders(40, 300)
    on_lone = {s for s in senders
               if cluster.master_of(keys.stream(_partition(keys, s))) == lone_master}
    assert on_lone and len(on_lone) < len(senders)
    with replica_stopped(cluster, lone_master):
        async with ingress(settings) as http:
            codes = {s: await _post(http, s, "hello", f"wamid.wait{s}") for s in senders}
    assert {codes[s] for s in on_lone} == {503}
    assert {codes[s] for s in senders if s not in on_lone} == {200}
    async with ingress(settings) as http:  # Meta redelivers once the replica is back
        assert {await _post(http, s, "hello", f"wamid.wait{s}") for s in on_lone} == {200}
    assert len(await _entries(redis, settings, "MessageReceived")) == len(senders)


def _partition(keys: Keys, sender: str) -> int:
    """The partition of a first-time sender known by phone (its user id derives from it)."""
    return keys.partition_of(first_user_id(Sender(phone=f"+{sender}", bsuid=None)))


async def test_a_master_killed_under_traffic_loses_no_acknowledged_webhook_and_sends_once(
    reply_settings: Settings, redis: RedisCluster, pool: asyncpg.Pool, graph: FakeGraphApi,
    cluster: PrivateCluster,
) -> None:
    settings = msgspec.structs.replace(reply_settings, redis_min_replicas=1,
                                       redis_wait_timeout_ms=500)
    keys = Keys.from_settings(settings)
    by_master = collections.Counter(cluster.master_of(s) for s in keys.streams())
    victim = by_master.most_common(1)[0][0]
    senders = _senders(240, 500)
    acknowledged: set[str] = set()
    refused = 0
    first_refusal = last_refusal = 0.0
    killed_at = 0.0

    async def deliver(http, sender: str) -> None:  # type: ignore[no-untyped-def]
        nonlocal refused, first_refusal, last_refusal
        while True:  # Meta redelivers every non-200
            try:
                code = await _post(http, sender, f"hello {sender}", f"wamid.fo{sender}")
            except Exception:  # noqa: BLE001 - a failed request is redelivered like a 5xx
                code = 599
            if code == 200:
                acknowledged.add(sender)
                return
            refused += 1
            first_refusal = first_refusal or time.monotonic()
            last_refusal = time.monotonic()
            await asyncio.sleep(0.1)

    handlers = [Projector.from_settings(settings),
                replier(settings, pool, redis)]
    async with consumers(settings, handlers), ingress(settings) as http:
        for sender in senders[:80]:
            await deliver(http, sender)
        killed_at = time.monotonic()
        cluster.kill(victim)
        failover = _Failover(cluster, victim)
        failover.start()
        try:  # Meta redelivers forever: bound the wait in case no replica is promoted
            await asyncio.wait_for(asyncio.gather(*(deliver(http, s) for s in senders[80:])),
                                   timeout=120)
        finally:
            promoted_at = await asyncio.to_thread(failover.promoted_at)
        recovered_at = last_refusal
        try:
            await eventually(lambda: _drained(redis, settings, "replier"), timeout=60)
            await eventually(lambda: _drained(redis, settings, "projector"), timeout=60)
        except AssertionError:
            for stream in keys.streams():
                print(stream, cluster.master_of(stream), await redis.xlen(stream),
                      await redis.xinfo_groups(stream), await redis.xrevrange(stream, count=1))
            raise
        await eventually(lambda: _drained(redis, settings, "replier"), timeout=60)
        await asyncio.sleep(1.0)  # a late double send would show up here
    sends = collections.Counter(s["to"] for s in graph.sent())
    rows = await fetch_rows(settings.database_url, "SELECT source_message_id FROM messages")
    projected = collections.Counter(r["source_message_id"] for r in rows)
    lost = [s for s in acknowledged if projected[f"wamid.fo{s}"] != 1 or sends[f"+{s}"] != 1]
    doubles = sum(n - 1 for n in sends.values() if n > 1)
    print(f"\nfailover: accepted {len(acknowledged)}, refused during the failover {refused}, "
          f"master promoted after {promoted_at - killed_at:.1f} s, writes accepted again "
          f"{max(recovered_at - killed_at, 0):.1f} s after the kill, lost {len(lost)}, "
          f"double sends {doubles}")
    letters = await list_dead_letters(redis, keys)
    assert letters == [], [letter.error for letter in letters]
    assert len(acknowledged) == len(senders)
    assert lost == [] and doubles == 0


class _Failover(threading.Thread):
    """Waits for a replica of ``victim`` to serve its slots, then restarts ``victim`` (it
    rejoins as the new master's replica, so ``WAIT 1`` passes again).

    A thread, not a task: the test client runs each request through a blocking portal, so
    the test's event loop is stopped while a request is served and would see the promotion
    only after every pending delivery had been tried once more."""

    def __init__(self, cluster: PrivateCluster, victim: int, timeout: float = 30) -> None:
        super().__init__(name="failover-watcher", daemon=True)
        self.cluster, self.victim, self.timeout = cluster, victim, timeout
        self._promoted_at: float | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + self.timeout
            while self.victim in self.cluster.masters() or len(self.cluster.masters()) < 3:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no replica of {self.victim} promoted within "
                                       f"{self.timeout}s")
                time.sleep(0.1)
            self._promoted_at = time.monotonic()
            self.cluster.start_node(self.victim)
        except BaseException as exc:  # noqa: BLE001 - raised again by promoted_at
            self._error = exc

    def promoted_at(self) -> float:
        """When the promotion was seen (monotonic); the watcher's error, if it failed."""
        self.join(self.timeout + 30)
        if self._error is not None:
            raise self._error
        assert self._promoted_at is not None, "the failover watcher did not finish"
        return self._promoted_at
