"""``/console``: the health of the pipeline at a glance, refreshed by ``console.js``.

Per group lag, pending, oldest pending age and consumers, the projector checkpoint against
the stream tail and dead letters come from Redis (the same reading as ``mecove status``);
rates and replies the replier gave up on from the event archive; replies Meta reported
undeliverable from ``delivery_statuses``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.response import Template
from redis.asyncio import Redis

from app.console.page import page
from app.console.queries import failed_deliveries_since, failed_replies_since, rate_counts
from app.console.view_models import RateChart, age_text, rate_chart
from app.operations.log_status import LogStatus, read_status
from app.platform.checkpoints import read_checkpoints
from app.platform.clock import now_ms
from app.platform.eventlog.entries import entry_id_of, entry_position
from app.platform.eventlog.keys import Keys

__all__ = ["OverviewController", "read_overview"]

CHART_BUCKETS = 30
CHART_BUCKET_MS = 20_000  # 30 buckets of 20 s: the last ten minutes
FAILED_WINDOW_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Overview:
    status: LogStatus
    checkpoint_behind: dict[int, bool]
    chart: RateChart
    failed_replies: int  # given up by the replier in the last hour
    failed_deliveries: int  # reported failed by Meta in the last hour

    @property
    def failed_last_hour(self) -> int:
        return self.failed_replies + self.failed_deliveries
    dead_letters: int


async def read_overview(redis: Redis, pool: asyncpg.Pool, keys: Keys, now: int) -> Overview:
    """Everything the overview shows, read now."""
    status = await read_status(redis, keys, None)
    since = now - CHART_BUCKETS * CHART_BUCKET_MS
    async with pool.acquire() as connection:
        checkpoints = await read_checkpoints(connection)
        counts = await rate_counts(connection, keys.partitions, since_ms=since,
                                   bucket_ms=CHART_BUCKET_MS)
        failed = await failed_replies_since(connection, keys.partitions,
                                            now - FAILED_WINDOW_MS)
        undelivered = await failed_deliveries_since(
            connection, datetime.fromtimestamp((now - FAILED_WINDOW_MS) / 1000, tz=UTC))
    behind: dict[int, bool] = {}
    for p in status.partitions:
        position = checkpoints.get(p.partition)
        p.projector_checkpoint = entry_id_of(position) if position else None
        behind[p.partition] = bool(p.tail_id) and (
            position is None or entry_position(p.tail_id or "0-0") > position)
    return Overview(
        status=status, checkpoint_behind=behind,
        chart=rate_chart(counts, buckets=CHART_BUCKETS, bucket_ms=CHART_BUCKET_MS),
        failed_replies=failed, failed_deliveries=undelivered,
        dead_letters=sum(p.dead_letters for p in status.partitions),
    )


class OverviewController(Controller):
    path = "/"

    async def _overview(self, state: State) -> Overview:
        return await read_overview(state.redis, state.pool, Keys.from_settings(state.settings),
                                   now_ms())

    @get("/")
    async def overview(self, request: Request[Any, Any, Any], state: State) -> Template:
        """The whole overview page."""
        return page(request, "overview.html", "overview",
                    overview=await self._overview(state), age_text=age_text)

    @get("/overview/live")
    async def live(self, request: Request[Any, Any, Any], state: State) -> Template:
        """The overview's body alone, for the page's periodic refresh."""
        return page(request, "overview_body.html", "overview",
                    overview=await self._overview(state), age_text=age_text)
