"""The projector: applies the log to PostgreSQL, one transaction per batch.

Each transaction writes the rows, archives the events and advances the partition's
checkpoint (``app/platform/checkpoints.py``); entries at or below the checkpoint are skipped,
so a crash between commit and XACK changes nothing. One projector process at a time holds a
partition's lease (a PostgreSQL advisory lock on the very connection that writes), so
batches apply in order even with many projector processes; the others stand by and take
over when it dies.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Sequence

import asyncpg

from app.platform.checkpoints import PROJECTOR, read_checkpoint, write_checkpoint
from app.platform.eventlog.content_crypto import MasterKeys
from app.platform.eventlog.content_keys import durable_keyring, master_keys_for
from app.platform.eventlog.entries import entry_position
from app.platform.runtime.handler import Delivery, OrderedHandler
from app.platform.runtime.retry_policy import NonRetryableError
from app.platform.settings import Settings
from projections.known_rows import KnownRows
from projections.row_changes import RowChanges
from projections.write_rows import prepare_staging, write_row_changes

log = logging.getLogger("mecove.projector")

# Held shared by every projector batch and exclusively by replay's swap (projections/replay.py).
SWAP_LOCK_KEY = zlib.crc32(b"mecove-projection-swap")
LEASE_POLL_S = 1.0


def lease_key(key_prefix: str, partition: int) -> int:
    """A stable 32-bit advisory lock key for (deployment, partition)."""
    return zlib.crc32(f"mecove-projector:{key_prefix}:{partition}".encode())


class Projector(OrderedHandler):
    """Consumer-group handler that projects events into the live tables."""

    group = PROJECTOR
    # XREADGROUP returns what is there up to this count: small batches when the projector keeps
    # up, large ones on a backlog, where 5,000 per transaction wrote ~1.8x faster than 1,000.
    min_batch_size = 5_000

    def __init__(self, database_url: str, key_prefix: str,
                 master: MasterKeys | None) -> None:
        self.database_url = database_url
        self.key_prefix = key_prefix
        self.master = master  # opens sealed content for the rows (content_crypto)
        self._connections: dict[int, asyncpg.Connection] = {}
        self._known: dict[int, KnownRows] = {}  # rows this process's batches wrote, by partition

    @classmethod
    def from_settings(cls, settings: Settings) -> Projector:
        """The deployment's projector: its database, key prefix and master key."""
        return cls(settings.database_url, settings.key_prefix,
                   master_keys_for(settings.master_key, settings.previous_master_key))

    async def start(self) -> None:
        return None  # nothing runs in the background; connections come with each lease

    async def acquire_partition(self, partition: int, stop: asyncio.Event) -> bool:
        announced = False
        while not stop.is_set():
            try:
                connection = await asyncpg.connect(self.database_url)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("postgres unavailable, waiting", extra={"fields": {
                    "error": type(exc).__name__}})
                await _wait(stop, LEASE_POLL_S)
                continue
            if await self._lease(connection, partition):
                self._connections[partition] = connection
                log.info("projector lease acquired", extra={"fields": {"partition": partition}})
                return True
            await connection.close()
            if not announced:
                log.info("another projector holds the lease; standing by",
                         extra={"fields": {"partition": partition}})
                announced = True
            await _wait(stop, LEASE_POLL_S)
        return False

    async def _lease(self, connection: asyncpg.Connection, partition: int) -> bool:
        """Take the partition's lease on ``connection``; once held, ready its staging tables."""
        if not await connection.fetchval("SELECT pg_try_advisory_lock($1)",
                                         lease_key(self.key_prefix, partition)):
            return False
        await prepare_staging(connection)
        return True

    async def release_partition(self, partition: int) -> None:
        connection = self._connections.pop(partition, None)
        if connection is not None:
            await connection.close()  # closing the session releases the advisory lock

    async def _connection(self, partition: int) -> asyncpg.Connection:
        connection = self._connections.get(partition)
        if connection is None or connection.is_closed():
            # The lease died with the old session: only continue if we get it back.
            if connection is not None:
                self._connections.pop(partition, None)
            fresh = await asyncpg.connect(self.database_url)
            if not await self._lease(fresh, partition):
                await fresh.close()
                raise ConnectionError("projector lease lost to another process")
            self._connections[partition] = fresh
            connection = fresh
        return connection

    async def handle(self, deliveries: list[Delivery]) -> Sequence[BaseException | None]:
        """One transaction: rows, archive and checkpoint for every entry past the checkpoint."""
        partition = deliveries[0].partition
        connection = await self._connection(partition)
        known = self._known.setdefault(partition, KnownRows())
        try:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock_shared($1)", SWAP_LOCK_KEY)
                checkpoint = await read_checkpoint(connection, partition)
                known.trust_at(checkpoint)
                changes = RowChanges(keyring=await durable_keyring(
                    (d.event for d in deliveries), connection, self.master))
                last = checkpoint
                for delivery in deliveries:
                    position = entry_position(delivery.entry_id)
                    if position <= checkpoint:
                        continue
                    changes.add(partition, delivery.entry_id, delivery.event, delivery.body)
                    last = max(last, position)
                if last == checkpoint:
                    return [None] * len(deliveries)
                known.leave_out_unchanged(changes)
                await write_row_changes(connection, changes)
                await write_checkpoint(connection, partition, last)
            known.committed(changes, last)
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as exc:
            if len(deliveries) == 1:
                raise NonRetryableError(f"event cannot be projected: {exc}") from exc
            return await self._one_by_one(deliveries)
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            await self.release_partition(partition)
            raise ConnectionError(f"postgres unavailable: {type(exc).__name__}") from exc
        log.debug("batch projected", extra={"fields": {"partition": partition,
                                                       "count": len(deliveries)}})
        return [None] * len(deliveries)

    async def _one_by_one(self, deliveries: list[Delivery]) -> list[BaseException | None]:
        """Find the event a batch cannot take: apply each alone; the bad one dead-letters."""
        outcomes: list[BaseException | None] = []
        for delivery in deliveries:
            try:
                outcomes.append((await self.handle([delivery]))[0])
            except NonRetryableError as exc:
                outcomes.append(exc)
        return outcomes

    async def on_dead_letter(self, delivery: Delivery, error: BaseException | str) -> None:
        return None

    async def close(self) -> None:
        for partition in list(self._connections):
            await self.release_partition(partition)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
