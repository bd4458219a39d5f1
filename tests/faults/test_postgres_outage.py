"""PostgreSQL down for ~10 s under traffic: the ingress (which needs only Redis) keeps
answering 200, the projector waits and resumes, and no message is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from app.devtools.ports import free_port
from app.platform.eventlog.keys import Keys
from app.platform.migrations import run_migrations
from app.platform.settings import Settings
from tests.conftest import database_url_for
from tests.faults.fault_table import FaultRow, FaultTable
from tests.faults.ledger import projected_wamids, received_wamids
from tests.faults.pipeline import Pipeline
from tests.faults.private_servers import PrivatePostgres, private_postgres
from tests.faults.traffic import Progress, post_webhooks, server_errors, soak_plan

pytestmark = pytest.mark.slow

OUTAGE_S = 10.0
WEBHOOKS = 1_600
RATE_PER_S = 80  # spreads the traffic over ~20 s: before, during and after the outage
WORKERS = 8


async def _ready_status(base_url: str) -> int:
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(f"{base_url}/ready")).status_code


async def _outage(cluster: PrivatePostgres, progress: Progress, base_url: str,
                  observed: dict[str, object]) -> None:
    await progress.reached(WEBHOOKS // 5)
    await asyncio.to_thread(cluster.stop, "fast")
    observed["answered_before"] = progress.answered
    down_at = time.monotonic()
    await asyncio.sleep(1.0)
    observed["ready_while_down"] = await _ready_status(base_url)
    await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
    observed["answered_during"] = progress.answered - int(observed["answered_before"])  # type: ignore[call-overload]
    observed["statuses_before_restart"] = Counter(progress.statuses)
    await asyncio.to_thread(cluster.start)
    observed["back_at"] = time.monotonic()
    observed["down_s"] = time.monotonic() - down_at


async def test_postgres_down_ten_seconds_keeps_ingress_answering_and_loses_nothing(
    settings: Settings, redis: Redis, tmp_path: Path, fault_table: FaultTable,
) -> None:
    plan = soak_plan(seed=3, tag="pgdown", total=WEBHOOKS, users=60)
    with private_postgres() as cluster:
        admin = database_url_for(cluster.admin_url, "postgres")
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute("CREATE DATABASE mecove")
        finally:
            await connection.close()
        database_url = database_url_for(cluster.admin_url, "mecove")
        await run_migrations(database_url)
        private = msgspec.structs.replace(settings, database_url=database_url, port=free_port())
        progress = Progress()
        observed: dict[str, object] = {}
        with Pipeline(private, tmp_path) as pipeline:
            await pipeline.start_api()
            pipeline.start_consumer("projector")
            outage = asyncio.create_task(_outage(cluster, progress, pipeline.base_url, observed))
            statuses = await post_webhooks(
                f"{pipeline.base_url}/webhooks/whatsapp", [w.raw for w in plan.webhooks],
                private.whatsapp_app_secret or "", concurrency=WORKERS, progress=progress,
                pace=lambda _: WORKERS / RATE_PER_S)
            await outage
            deadline = time.monotonic() + 90
            while True:
                assert not pipeline.crashed(), pipeline.log_tail(pipeline.current("projector"))
                projected = await projected_wamids(database_url)
                if set(projected) >= plan.wamids or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            caught_up_s = time.monotonic() - float(observed["back_at"])  # type: ignore[arg-type]
            unclean = pipeline.unclean_exits(pipeline.stop_all())
        received = await received_wamids(redis, Keys(private.key_prefix, private.partitions))
        projected = await projected_wamids(database_url)

    lost = len(plan.wamids - set(projected))
    print(f"\nPostgreSQL down {observed.get('down_s', 0):.1f}s after "
          f"{observed.get('answered_before')} webhooks; {observed.get('answered_during')} "
          f"answered while it was down ({observed.get('statuses_before_restart')}); /ready "
          f"while down: {observed.get('ready_while_down')}; all answers "
          f"{dict(Counter(statuses))}; {len(projected)} of {len(plan.wamids)} wamids projected, "
          f"caught up {caught_up_s:.1f}s after PostgreSQL came back")
    fault_table.add(FaultRow(
        scenario="PostgreSQL down 10 s",
        webhooks_sent=len(statuses),
        accepted=Counter(statuses)[200],
        duplicates=plan.duplicates,
        appended=sum(received.values()),
        projected=sum(projected.values()),
        lost=lost,
        server_errors=server_errors(statuses),
    ))
    assert int(observed["answered_during"]) > 100, "too little traffic during the outage"  # type: ignore[call-overload]
    assert observed["ready_while_down"] == 503
    assert statuses == [200] * len(statuses), dict(Counter(statuses))
    assert set(received) == plan.wamids and set(received.values()) == {1}
    assert set(projected) == plan.wamids, f"{lost} messages never projected"
    assert set(projected.values()) == {1}
    assert unclean == {}
