"""The summarizer: a 7-day summary per user, only when its input changed, bursts coalesced.

Per trigger (MessageReceived or SummaryRequested): claim the user's window (else deferred,
see ``coalescing``); wait, bounded, until the projector's checkpoint covers the trigger so
the summary includes that message; load the user's last 7 days; skip when the input hash
equals the last summary's; ask the LLM (or write the placeholder of ``fallback_text``, status
``fallback``); append SummaryCreated, which the projector turns into a Summary row.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence

import asyncpg
from redis.asyncio import Redis

from app.platform.checkpoints import checkpoint_covers, read_checkpoint
from app.platform.clock import now_ms
from app.platform.eventlog.append import EventLog
from app.platform.runtime.handler import Delivery, GroupHandler
from app.platform.runtime.retry_policy import RetryableError
from app.platform.settings import Settings
from consumers.llm.chat_client import ChatClient
from consumers.llm.llm_config import LlmConfig, load_llm_config
from consumers.summarizer.coalescing import SummaryCoalescer
from consumers.summarizer.summary_input import (
    SummaryInput,
    fallback_text,
    input_hash,
    summary_prompt,
    summary_range,
)
from consumers.summarizer.summary_keys import SummaryKeys
from schema.events import MessageReceived, SummaryCreated, SummaryRequested
from schema.ids import NAMESPACE

log = logging.getLogger("mecove.summarizer")


class ProjectionBehind(RetryableError):
    """The projector has not applied the triggering event yet."""


class SummaryHandler(GroupHandler):
    group = "summarizer"
    min_batch_size = 1  # the configured batch size applies

    def __init__(
        self,
        *,
        redis: Redis,
        event_log: EventLog,
        pool: asyncpg.Pool,
        chat: ChatClient,
        llm: LlmConfig,
        coalescer: SummaryCoalescer,
        wait_projection_ms: int = 10_000,
        clock_ms: Callable[[], int] = now_ms,
        sweep_interval_s: float = 0.25,
    ) -> None:
        self.redis = redis
        self.event_log = event_log
        self.keys = event_log.keys
        self.summary_keys = SummaryKeys(event_log.keys)
        self.pool = pool
        self.chat = chat
        self.llm = llm
        self.coalescer = coalescer
        self.wait_projection_ms = wait_projection_ms
        self.clock_ms = clock_ms
        self.sweep_interval_s = sweep_interval_s
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the sweeper that turns due deferred triggers into SummaryRequested events."""
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def sweep_once(self) -> int:
        emitted = 0
        for partition in range(self.keys.partitions):
            emitted += await self.coalescer.emit_due(partition, self.clock_ms())
        return emitted

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception as exc:  # noqa: BLE001 - keep sweeping through Redis hiccups
                log.warning("summary sweep failed", extra={"fields": {"error": repr(exc)}})
            await asyncio.sleep(self.sweep_interval_s)

    async def handle(self, deliveries: list[Delivery]) -> Sequence[BaseException | None]:
        # Only the last trigger per user in a batch matters: its summary covers the others.
        last_for_user: dict[str, Delivery] = {}
        for delivery in deliveries:
            if isinstance(delivery.event, MessageReceived | SummaryRequested):
                last_for_user[delivery.event.user_id] = delivery
        outcomes: dict[str, BaseException | None] = {d.entry_id: None for d in deliveries}

        async def one(delivery: Delivery) -> None:
            try:
                await self.summarize_for(delivery)
            except Exception as exc:  # noqa: BLE001 - an outcome for the runtime
                outcomes[delivery.entry_id] = exc
                for other in deliveries:  # the coalesced ones share the fate of the last
                    if getattr(other.event, "user_id", None) == delivery.event.user_id:  # type: ignore[union-attr]
                        outcomes[other.entry_id] = exc if other is delivery else None

        await asyncio.gather(*(one(d) for d in last_for_user.values()))
        return [outcomes[d.entry_id] for d in deliveries]

    async def summarize_for(self, delivery: Delivery) -> None:
        event = delivery.event
        assert isinstance(event, MessageReceived | SummaryRequested)
        user_id = event.user_id
        if not await self.coalescer.claim(user_id, self.clock_ms()):
            log.info("summary deferred to the end of the user's window",
                     extra={"fields": {"event_id": event.event_id, "user_id": user_id}})
            return
        try:
            await self._wait_for_projection(delivery)
            await self._summarize(user_id, event.event_id)
        except BaseException:
            await self.coalescer.release(user_id)
            raise

    async def _wait_for_projection(self, delivery: Delivery) -> None:
        deadline = time.monotonic() + self.wait_projection_ms / 1000
        while True:
            async with self.pool.acquire() as connection:
                checkpoint = await read_checkpoint(connection, delivery.partition)
            if checkpoint_covers(checkpoint, delivery.entry_id):
                return
            if time.monotonic() >= deadline:
                raise ProjectionBehind(f"projector has not reached {delivery.entry_id}")
            await asyncio.sleep(0.05)

    async def _summarize(self, user_id: str, trigger_event_id: str) -> None:
        now = self.clock_ms()
        range_start, range_end = summary_range(now)
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT id, text, (extract(epoch FROM created_at) * 1000)::bigint AS at_ms "
                "FROM messages WHERE user_id = $1 AND created_at >= to_timestamp($2 / 1000.0) "
                "AND created_at <= to_timestamp($3 / 1000.0) ORDER BY created_at, id",
                user_id, range_start, range_end,
            )
            last_hash = await self._last_hash(connection, user_id)
        inputs = [SummaryInput(str(r["id"]), r["text"] or "", int(r["at_ms"])) for r in rows]
        digest = input_hash(inputs)
        fields = {"event_id": trigger_event_id, "user_id": user_id, "count": len(inputs)}
        if digest == last_hash:
            log.info("summary skipped: input unchanged", extra={"fields": fields})
            return
        completion = await self.chat.complete(
            self.llm.summary.system_prompt, summary_prompt(inputs), fallback_text(len(inputs)),
            purpose="summary",
        )
        summary_id = str(uuid.uuid5(NAMESPACE, f"summary:{user_id}:{digest}"))
        created = SummaryCreated(
            event_id=str(uuid.uuid5(NAMESPACE, f"event:SummaryCreated:{summary_id}")),
            occurred_at=now,
            summary_id=summary_id,
            user_id=user_id,
            range_start=range_start,
            range_end=range_end,
            status="fallback" if completion.fallback_used else "success",
            summary_text=completion.text,
            model_name=completion.model,
            prompt_version=self.llm.summary.prompt_version,
            input_messages_count=len(inputs),
            input_hash=digest,
            error=completion.error,
        )
        partition = self.keys.partition_of(user_id)
        await self.event_log.append(created, user_id=user_id)
        await self.redis.set(self.summary_keys.input_hash(partition, user_id), digest,
                             ex=8 * 86_400)
        log.info("summary created", extra={"fields": {**fields, "status": created.status,
                                                     "summary_id": summary_id}})

    async def _last_hash(self, connection: asyncpg.Connection, user_id: str) -> str | None:
        """The latest summary's hash: Redis first (ahead of the projector), then PostgreSQL."""
        partition = self.keys.partition_of(user_id)
        cached = await self.redis.get(self.summary_keys.input_hash(partition, user_id))
        if cached is not None:
            return cached.decode()
        return await connection.fetchval(
            "SELECT input_hash FROM summaries WHERE user_id = $1 "
            "ORDER BY created_at DESC LIMIT 1", user_id)

    async def on_dead_letter(self, delivery: Delivery, error: BaseException | str) -> None:
        return None

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.chat.close()


def build_summary_handler(settings: Settings, pool: asyncpg.Pool, redis: Redis,
                          clock_ms: Callable[[], int] = now_ms) -> SummaryHandler:
    """The summarizer wired from settings; ``clock_ms`` lets tests move time."""
    llm = load_llm_config(settings.llm_config_path)
    event_log = EventLog.from_settings(settings, redis)
    return SummaryHandler(
        redis=redis,
        event_log=event_log,
        pool=pool,
        chat=ChatClient(llm, settings.groq_api_key, settings.groq_base_url),
        llm=llm,
        coalescer=SummaryCoalescer(redis, event_log.keys, settings.summary_window_ms),
        wait_projection_ms=settings.summary_wait_projection_ms,
        clock_ms=clock_ms,
    )
