"""Redis killed, shut down and restarted under webhook traffic (a private ``redis-server``).

* ``appendfsync always``: Redis writes and fsyncs the AOF before it answers, so every webhook
  answered 200 survives a SIGKILL.
* ``appendfsync everysec``: Redis fsyncs once a second, so a crash (SIGKILL, power loss) may
  lose up to about one second of writes that were already acknowledged: webhooks answered
  200 can be gone. Only a graceful ``SHUTDOWN`` (which fsyncs) guarantees nothing is lost;
  the loss on a kill is measured and printed, not asserted.
* Redis down: the ingress answers 503 (Meta redelivers) for as long as it is down, recovers
  by itself, and no append is half-written: one Lua script sets the dedupe key and adds the
  event together, so there is never one without the other.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from app.devtools.ports import free_port
from app.devtools.webhook_bodies import signed_headers
from app.platform.eventlog.keys import Keys
from app.platform.settings import Settings
from tests.faults.fault_table import FaultRow, FaultTable
from tests.faults.ledger import dedupe_marks, received_marks, received_wamids
from tests.faults.pipeline import Pipeline
from tests.faults.private_servers import PrivateRedis, private_redis
from tests.faults.traffic import (
    TRANSPORT_ERROR,
    Progress,
    Webhook,
    WebhookPlan,
    post_webhooks,
    server_errors,
    soak_plan,
)
from tests.service import ingress

pytestmark = pytest.mark.slow

WORKERS = 16
UNAVAILABLE = 503
Marks = set[tuple[str, str]]  # (user key, wamid) pairs, as the ledger reads them


def _wamids(webhooks: list[Webhook]) -> set[str]:
    return {m.wamid for w in webhooks for m in w.messages}


def _acknowledged(plan: WebhookPlan, statuses: list[int], offset: int = 0) -> set[str]:
    """wamids of the webhooks answered 200 (``statuses[i]`` is webhook ``offset + i``)."""
    return _wamids([plan.webhooks[offset + i] for i, s in enumerate(statuses) if s == 200])


async def _post(pipeline: Pipeline, webhooks: list[Webhook], progress: Progress | None = None
                ) -> list[int]:
    return await post_webhooks(f"{pipeline.base_url}/webhooks/whatsapp",
                               [w.raw for w in webhooks],
                               pipeline.settings.whatsapp_app_secret or "",
                               concurrency=WORKERS, progress=progress)


def _server_errors(statuses: list[int]) -> int:
    """Answers that are server errors, the 503 asking Meta to redeliver aside."""
    return server_errors(statuses, allowed=frozenset({UNAVAILABLE}))


def _fault_row(scenario: str, plan: WebhookPlan, statuses: list[int], appended: int,
               lost: int) -> FaultRow:
    """The fault-table row of a scenario that sent ``plan``'s webhooks and got ``statuses``."""
    counts = Counter(statuses)
    return FaultRow(
        scenario=scenario, webhooks_sent=len(statuses), accepted=counts[200],
        duplicates=plan.duplicates, appended=appended, lost=lost,
        server_errors=_server_errors(statuses), unavailable_503=counts[UNAVAILABLE])


def _assert_each_once_and_whole(received: Counter[str], dedupe: Marks, events: Marks,
                                statuses: list[int], unclean: dict[str, int]) -> None:
    """Each wamid in the log once, each append whole (its dedupe key and its event), no
    server error but 503, and every process exited cleanly."""
    assert set(received.values()) == {1}
    assert dedupe == events, (f"half-written: {len(dedupe - events)} dedupe keys without an "
                              f"event, {len(events - dedupe)} events without a dedupe key")
    assert _server_errors(statuses) == 0
    assert unclean == {}


@asynccontextmanager
async def _api_on_private_redis(settings: Settings, tmp_path: Path, appendfsync: str
                                ) -> AsyncIterator[tuple[PrivateRedis, Keys, Pipeline]]:
    """A private ``redis-server`` with ``appendfsync`` and an API process on it; the server,
    the keys of the run and the pipeline (whose processes are stopped on exit)."""
    with private_redis(appendfsync) as server:
        private = _private(settings, server)
        with Pipeline(private, tmp_path) as pipeline:
            await pipeline.start_api()
            yield server, Keys(private.key_prefix, private.partitions), pipeline


async def _post_killing_redis(server: PrivateRedis, pipeline: Pipeline,
                              webhooks: list[Webhook], after: int) -> tuple[list[int], int]:
    """Post ``webhooks`` and SIGKILL Redis once ``after`` of them are answered; the answers,
    and how many had been answered when the kill landed."""
    progress = Progress()

    async def kill() -> int:
        await progress.reached(after)
        await asyncio.to_thread(server.kill)
        return progress.answered

    killer = asyncio.create_task(kill())
    statuses = await _post(pipeline, webhooks, progress)
    return statuses, await killer


async def _log_state(server: PrivateRedis, keys: Keys) -> tuple[Counter[str], Marks, Marks]:
    client = Redis.from_url(server.url)
    try:
        return (await received_wamids(client, keys), await dedupe_marks(client, keys),
                await received_marks(client, keys))
    finally:
        await client.aclose()


async def _redeliver(pipeline: Pipeline, webhooks: list[Webhook], rounds: int = 3) -> list[int]:
    """What Meta does with a refused webhook: post it again, a few times if need be."""
    statuses = await _post(pipeline, webhooks)
    for _ in range(rounds - 1):
        refused = [i for i, status in enumerate(statuses) if status != 200]
        if not refused:
            break
        for i, status in zip(refused, await _post(pipeline, [webhooks[i] for i in refused]),
                             strict=True):
            statuses[i] = status
    return statuses


def _private(settings: Settings, server: PrivateRedis) -> Settings:
    return msgspec.structs.replace(settings, redis_url=server.url, port=free_port())


async def test_with_appendfsync_always_every_acknowledged_webhook_survives_a_sigkill(
    settings: Settings, tmp_path: Path, fault_table: FaultTable,
) -> None:
    plan = soak_plan(seed=41, tag="aofalways", total=1_400, users=80, duplicate_share=0.1)
    async with _api_on_private_redis(settings, tmp_path, "always") as (server, keys, pipeline):
        statuses, killed_at = await _post_killing_redis(server, pipeline, plan.webhooks, 700)
        await asyncio.to_thread(server.start)
        received, dedupe, events = await _log_state(server, keys)
        unclean = pipeline.unclean_exits(pipeline.stop_all())
    acknowledged = _acknowledged(plan, statuses)
    lost = acknowledged - set(received)
    counts = Counter(statuses)
    print(f"\nAOF always: SIGKILL after {killed_at} answers; answers {dict(counts)}; "
          f"{len(acknowledged)} wamids acknowledged, {len(received)} in the log after restart, "
          f"{len(lost)} lost")
    fault_table.add(_fault_row("Redis SIGKILL, AOF always", plan, statuses,
                               appended=sum(received.values()), lost=len(lost)))
    assert counts[200] >= 700 and counts[UNAVAILABLE] > 0, "the kill did not land mid-traffic"
    assert lost == set(), f"{len(lost)} acknowledged webhooks lost"
    _assert_each_once_and_whole(received, dedupe, events, statuses, unclean)


async def test_with_appendfsync_everysec_a_graceful_shutdown_loses_nothing(
    settings: Settings, tmp_path: Path, fault_table: FaultTable,
) -> None:
    """Documents the everysec window: a SIGKILL may lose up to ~1 s of acknowledged writes
    (printed, not asserted); after a graceful SHUTDOWN every acknowledged webhook is there.
    """
    plan = soak_plan(seed=42, tag="aofeverysec", total=1_800, users=80, duplicate_share=0.1)
    first, second = plan.webhooks[:1_200], plan.webhooks[1_200:]
    async with _api_on_private_redis(settings, tmp_path, "everysec") as (server, keys,
                                                                         pipeline):
        killed_statuses, _ = await _post_killing_redis(server, pipeline, first, 700)
        await asyncio.to_thread(server.start)
        after_kill, _, _ = await _log_state(server, keys)
        graceful_statuses = await _redeliver(pipeline, second)
        await asyncio.to_thread(server.shutdown)
        await asyncio.to_thread(server.start)
        after_shutdown, dedupe, events = await _log_state(server, keys)
        unclean = pipeline.unclean_exits(pipeline.stop_all())
    lost_on_kill = _acknowledged(plan, killed_statuses) - set(after_kill)
    acknowledged_later = _acknowledged(plan, graceful_statuses, offset=len(first))
    lost_on_shutdown = acknowledged_later - set(after_shutdown)
    statuses = killed_statuses + graceful_statuses
    print(f"\nAOF everysec: SIGKILL lost {len(lost_on_kill)} of "
          f"{len(_acknowledged(plan, killed_statuses))} acknowledged wamids (the documented "
          f"~1 s window); graceful SHUTDOWN lost {len(lost_on_shutdown)} of "
          f"{len(acknowledged_later)}")
    fault_table.add(_fault_row("Redis AOF everysec: kill, then SHUTDOWN", plan, statuses,
                               appended=sum(after_shutdown.values()),
                               lost=len(lost_on_shutdown)))
    assert graceful_statuses == [200] * len(second)
    assert lost_on_shutdown == set(), f"{len(lost_on_shutdown)} lost after a graceful SHUTDOWN"
    _assert_each_once_and_whole(after_shutdown, dedupe, events, statuses, unclean)


async def test_redis_down_gives_503_then_recovers_by_itself_with_nothing_half_written(
    settings: Settings, tmp_path: Path, fault_table: FaultTable,
) -> None:
    plan = soak_plan(seed=43, tag="redisdown", total=1_500, users=80, duplicate_share=0.2)
    during, outage, after = plan.webhooks[:900], plan.webhooks[900:1_100], \
        plan.webhooks[1_100:]
    async with _api_on_private_redis(settings, tmp_path, "always") as (server, keys, pipeline):
        first, _ = await _post_killing_redis(server, pipeline, during, 450)
        down = await _post(pipeline, outage)
        async with httpx.AsyncClient(timeout=10) as client:
            ready_while_down = (await client.get(f"{pipeline.base_url}/ready")).status_code
        await asyncio.to_thread(server.start)
        recovered = await _post(pipeline, after)  # the same api process, not restarted
        unanswered = [w for w, s in zip(during + outage + after, first + down + recovered,
                                        strict=True) if s != 200]
        redelivered = await _redeliver(pipeline, unanswered)
        received, dedupe, events = await _log_state(server, keys)
        assert not pipeline.crashed()
        unclean = pipeline.unclean_exits(pipeline.stop_all())
    statuses = first + down + recovered + redelivered
    lost = plan.wamids - set(received)
    print(f"\nRedis down: answers while killed mid-traffic {dict(Counter(first))}, while down "
          f"{dict(Counter(down))} (/ready {ready_while_down}), after restart "
          f"{dict(Counter(recovered))}, redelivered {dict(Counter(redelivered))}; "
          f"{len(received)} of {len(plan.wamids)} wamids in the log; dedupe keys "
          f"{len(dedupe)}, events {len(events)}")
    fault_table.add(_fault_row("Redis down, then back", plan, statuses,
                               appended=sum(received.values()), lost=len(lost)))
    assert set(down) == {UNAVAILABLE}, "the ingress must answer 503 while Redis is down"
    assert ready_while_down == UNAVAILABLE
    # A few 503s right after the restart are the stale-connection refusals that
    # test_right_after_a_redis_restart_webhooks_are_accepted_not_refused pins down; here,
    # recovering means that the same process answers 200 again without being restarted.
    assert recovered[-100:] == [200] * 100, "the ingress did not recover by itself"
    assert redelivered == [200] * len(unanswered)
    assert TRANSPORT_ERROR not in statuses
    assert lost == set()
    _assert_each_once_and_whole(received, dedupe, events, statuses, unclean)


async def test_right_after_a_redis_restart_webhooks_are_accepted_not_refused(
    settings: Settings,
) -> None:
    """Redis is back and answering: the ingress must not answer 503 on its stale pooled
    connections (each such 503 makes Meta redeliver for no reason).
    """
    plan = soak_plan(seed=44, tag="restart", total=64, users=16, duplicate_share=0.0)
    before, after = plan.webhooks[:32], plan.webhooks[32:]
    secret = settings.whatsapp_app_secret or ""
    with private_redis("always") as server:
        private = _private(settings, server)
        async with ingress(private) as client:

            async def post(webhook: Webhook) -> int:
                response = await client.post("/webhooks/whatsapp", content=webhook.raw,
                                             headers=signed_headers(webhook.raw, secret))
                return response.status_code

            warm = await asyncio.gather(*(post(w) for w in before))
            await asyncio.to_thread(server.kill)
            await asyncio.to_thread(server.start)
            statuses = await asyncio.gather(*(post(w) for w in after))
    print(f"\nafter a Redis restart: {dict(Counter(statuses))}")
    assert warm == [200] * len(before)
    assert list(statuses) == [200] * len(after), \
        f"{sum(s != 200 for s in statuses)} of {len(after)} refused while Redis was up"
