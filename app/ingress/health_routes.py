"""``/health`` (the process answers) and ``/ready`` (Redis and PostgreSQL answer)."""

from __future__ import annotations

import asyncio

from litestar import Controller, Response, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


class HealthController(Controller):
    @get("/metrics", sync_to_thread=False, media_type=CONTENT_TYPE_LATEST)
    def metrics(self) -> Response[bytes]:
        """Prometheus text exposition of this process's metrics."""
        return Response(content=generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @get("/health", sync_to_thread=False)
    def health(self) -> dict[str, bool]:
        return {"ok": True}

    @get("/ready")
    async def ready(self, state: State) -> Response[dict[str, object]]:
        checks: dict[str, object] = {}
        try:
            await asyncio.wait_for(state.redis.ping(), timeout=2)
            checks["redis"] = True
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            checks["redis"] = f"unavailable: {type(exc).__name__}"
        try:
            async with state.pool.acquire(timeout=2) as connection:
                await connection.fetchval("SELECT 1")
            checks["postgres"] = True
        except Exception as exc:  # noqa: BLE001
            checks["postgres"] = f"unavailable: {type(exc).__name__}"
        ok = checks["redis"] is True and checks["postgres"] is True
        # Whether webhooks must carry Meta's signature (false: anyone may post one).
        checks["signed"] = bool(state.settings.whatsapp_app_secret)
        return Response(content={"ok": ok, **checks}, status_code=200 if ok else 503)
