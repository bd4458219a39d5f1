"""The operator's commands on the private cluster: forget (with --compact), rotate-master-key,
trim, and simulate (which starts ``mecove dev`` on the given servers, i.e. ``up``).

Each test spreads its users over partitions on more than one master and checks that the
command handled the keys on each of them.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.asyncio import RedisCluster

from app.devtools.ports import free_port
from app.devtools.private_cluster import PrivateCluster
from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message
from app.operations.forget import forget, rewrite_append_only_files
from app.operations.key_rotation import rotate_master_key
from app.operations.retention import trim
from app.platform.eventlog.append import content_keys_for
from app.platform.eventlog.content_crypto import MasterKeys
from app.platform.eventlog.content_keys import master_keys_for
from app.platform.eventlog.entries import as_text
from app.platform.eventlog.keys import Keys
from app.platform.identities import Sender, first_user_id
from app.platform.settings import Settings
from projections.projector import Projector
from tests.fakes.graph_api import FakeGraphApi
from tests.integration.consumer_helpers import fetch_rows, replier
from tests.processes import ROOT, env_for, start_mecove, stop, wait_for_http
from tests.service import consumers, eventually, ingress

pytestmark = pytest.mark.slow

SECRET = "test-app-secret"


def _senders(count: int, base: int) -> list[str]:
    return [f"1555{base + i:07d}" for i in range(count)]


def _user_of(sender: str) -> str:
    return first_user_id(Sender(phone=f"+{sender}", bsuid=None))


async def _post_all(settings: Settings, senders: list[str], text: str) -> None:
    async with ingress(settings) as http:
        for index, sender in enumerate(senders):
            raw = encode(delivery(text_message(sender, f"{text} {index}",
                                               wamid=f"wamid.{text}{sender}")))
            response = await http.post("/webhooks/whatsapp", content=raw,
                                       headers=signed_headers(raw, SECRET))
            assert response.status_code == 200


async def _content_key_hashes(redis: RedisCluster, prefix: str) -> list[bytes]:
    return [name async for name in redis.scan_iter(match=f"{prefix}:*:contentkey:*")]


async def test_rotate_master_key_rewraps_the_content_keys_on_every_master(
    settings: Settings, redis: RedisCluster, cluster: PrivateCluster
) -> None:
    senders = _senders(12, 900)
    await _post_all(settings, senders, "rotate")
    names = await _content_key_hashes(redis, settings.key_prefix)
    assert len(names) == len(senders)
    assert len({cluster.master_of(as_text(n)) for n in names}) >= 2

    new_key = MasterKeys.generate_text()
    rewrapped = await rotate_master_key(
        redis, Keys.from_settings(settings), settings.database_url,
        master_keys_for(new_key, settings.master_key))

    only_new = master_keys_for(new_key, None)
    assert only_new is not None
    assert rewrapped == len(senders)  # the Redis copies (no projector ran: user_keys is empty)
    for name in names:
        assert only_new.is_current(as_text(await redis.hget(name, "wrapped")))


async def test_forget_erases_one_person_on_the_cluster_and_compacts_every_node(
    reply_settings: Settings, redis: RedisCluster, pool: asyncpg.Pool, graph: FakeGraphApi,
    cluster: PrivateCluster,
) -> None:
    settings = reply_settings
    keys = Keys.from_settings(settings)
    senders = _senders(12, 950)
    await _post_all(settings, senders, "forget")
    async with consumers(settings, [Projector.from_settings(settings),
                                    replier(settings, pool, redis)]):
        await asyncio.to_thread(graph.wait_for_sends, len(senders), 30)
        await eventually(lambda: _replied(settings, len(senders)), timeout=30)
    alice, *others = senders
    alice_user = _user_of(alice)
    partition = keys.partition_of(alice_user)
    alice_keys = [as_text(n) async for n in redis.scan_iter(match=f"{keys.tag(partition)}:*")
                  if alice_user in as_text(n) and ":pace:" not in as_text(n)]  # pace: no content
    assert len(alice_keys) >= 2  # her content key and conversation context
    other_hashes_before = len(await _content_key_hashes(redis, settings.key_prefix)) - 1

    report = await forget(redis, keys, content_keys_for(settings, redis),
                          settings.database_url, f"+{alice}")

    assert report.user_id == alice_user and report.keys_destroyed == 1
    assert report.messages_erased == 1
    assert [k for k in alice_keys if await redis.exists(k)] == []
    remaining = await _content_key_hashes(redis, settings.key_prefix)
    assert len(remaining) == other_hashes_before
    assert len({cluster.master_of(as_text(n)) for n in remaining}) >= 2  # others untouched
    rows = await fetch_rows(settings.database_url, "SELECT user_id, text FROM messages")
    texts = {str(r["user_id"]): r["text"] for r in rows}
    assert texts[alice_user] == "[erased]"
    assert all(texts[_user_of(s)] != "[erased]" for s in others)
    assert await rewrite_append_only_files(redis) == 6  # every master and replica


async def _replied(settings: Settings, count: int) -> bool:
    rows = await fetch_rows(settings.database_url,
                            "SELECT count(*) AS n FROM messages WHERE replied_at IS NOT NULL")
    return rows[0]["n"] >= count


async def test_trim_deletes_what_every_group_finished_on_every_master(
    settings: Settings, redis: RedisCluster, cluster: PrivateCluster
) -> None:
    keys = Keys.from_settings(settings)
    await _post_all(settings, _senders(18, 1000), "trim")
    filled = [s for s in keys.streams() if await redis.xlen(s)]
    assert len({cluster.master_of(s) for s in filled}) >= 2
    appended = sum([await redis.xlen(s) for s in filled])
    async with consumers(settings, [Projector.from_settings(settings)]):
        # The projector acknowledges an entry once its checkpoint is committed.
        await eventually(lambda: _all_acknowledged(redis, keys), timeout=30)
    deleted = await trim(redis, keys, settings.database_url)
    assert deleted == appended
    assert [await redis.xlen(s) for s in filled] == [0] * len(filled)


async def _all_acknowledged(redis: RedisCluster, keys: Keys) -> bool:
    for stream in keys.streams():
        if not await redis.exists(stream):
            continue
        tail = await redis.xrevrange(stream, count=1)
        groups = await redis.xinfo_groups(stream)  # none until the projector has started
        if not groups or groups[0]["pending"] or groups[0]["last-delivered-id"] != tail[0][0]:
            return False
    return True


async def test_simulate_runs_a_conversation_through_mecove_dev_on_the_cluster(
    settings: Settings, redis: RedisCluster, tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WHATSAPP_", "GROQ_"))}
    env.update({
        "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
        "MECOVE_KEY_PREFIX": settings.key_prefix, "MECOVE_PARTITIONS": "6",
        "MECOVE_LOG_FORMAT": "json", "GROQ_API_KEY": "", "PYTHONUNBUFFERED": "1",
    })
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "simulate", "--seconds", "3", "--users", "3",
         "--rate", "2", "--burst", "1", "--duplicates", "0", "--seed", "5",
         "--username-users", "0", "--drain", "30", "--data-dir", str(tmp_path / "dev")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    text = run.stdout + run.stderr
    assert run.returncode == 0, text[-3000:]
    bot_lines = re.findall(r"^\[\s*[\d.]+s\] bot .*Noted\.", text, re.M)
    assert len(bot_lines) == 6, text[-3000:]  # three seconds at two deliveries a second
    assert "still without a reply: 0" in text
    assert "0 deliveries not accepted" in text
    keys = Keys(settings.key_prefix, 6)
    assert sum([await redis.xlen(s) for s in keys.streams()]) >= 6  # the log is on the cluster


async def test_mecove_api_with_two_workers_appends_on_several_masters(
    settings: Settings, redis: RedisCluster, cluster: PrivateCluster, tmp_path: Path,
) -> None:
    port = free_port()
    api = start_mecove(["api", "--host", "127.0.0.1", "--workers", "2"],
                       env_for(settings, MECOVE_PORT=str(port)), tmp_path / "api.log")
    try:
        await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{port}/health", 60)
        bodies = [encode(delivery(text_message(sender, "hello", wamid=f"wamid.w2.{sender}")))
                  for sender in _senders(20, 950)]
        secret = settings.whatsapp_app_secret or ""
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            codes = [(await client.post("/webhooks/whatsapp", content=raw,
                                        headers=signed_headers(raw, secret))
                      ).status_code for raw in bodies]
    finally:
        stop(api, signal.SIGTERM)
    assert codes == [200] * 20, (tmp_path / "api.log").read_text()[-3000:]
    keys = Keys.from_settings(settings)
    per_stream = {stream: await redis.xlen(stream) for stream in keys.streams()}
    masters = {cluster.master_of(stream) for stream, n in per_stream.items() if n}
    assert sum(per_stream.values()) >= 20 and len(masters) >= 2
