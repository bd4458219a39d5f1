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
from dataclasses import dataclass

import asyncpg

from app.platform.checkpoints import (
    NOTHING_APPLIED,
    PROJECTOR,
    read_checkpoint,
    write_checkpoint,
)
from app.platform.eventlog.content_crypto import DataKey, MasterKeys, key_owners
from app.platform.eventlog.content_keys import durable_keyring, master_keys_for, own_keys
from app.platform.eventlog.entries import Position, entry_position
from app.platform.eventlog.unwrapped_keys import UnwrappedKeys
from app.platform.runtime.handler import Delivery, OrderedHandler
from app.platform.runtime.retry_policy import NonRetryableError
from app.platform.settings import Settings
from projections.known_rows import KnownRows
from projections.row_changes import RowChanges
from projections.write_rows import FEW_ROWS, prepare_staging, write_row_changes
from schema.events import AnyEvent, UserKeyIssued

log = logging.getLogger("mecove.projector")

# Held shared by every projector batch and exclusively by replay's swap (projections/replay.py).
SWAP_LOCK_KEY = zlib.crc32(b"mecove-projection-swap")
LEASE_POLL_S = 1.0
PREPARE_TIMEOUT_S = 5.0  # past this, the batch read ahead is built in its transaction instead
# ``prepare`` builds this many events' rows at a time, then yields to the event loop: built in
# one go, a batch of 5,000 held the loop ~150 ms while PostgreSQL, waiting for the batch being
# written to send its next statement, sat idle (bench/README.md, projector-cpu).
YIELD_EVERY = 200

_BatchKey = tuple[int, str, str, int]  # partition, first and last entry id, count


def _batch_key(deliveries: list[Delivery]) -> _BatchKey:
    return (deliveries[0].partition, deliveries[0].entry_id, deliveries[-1].entry_id,
            len(deliveries))


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A batch's rows built before its transaction (``Projector.prepare``)."""

    changes: RowChanges
    first: Position  # its lowest and highest entry positions
    last: Position
    missing_keys: list[str]  # keys its sealed content names that user_keys did not hold then
    # Keys taken from the UserKeyIssued of the batch before it (being written meanwhile): its
    # rows stand only if user_keys holds every one of them when it is handled.
    pending_keys: list[str]


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
        # Keys unwrapped by earlier batches; each batch still asks user_keys (decision 0010).
        self._unwrapped = UnwrappedKeys(master) if master is not None else None
        self._connections: dict[int, asyncpg.Connection] = {}
        self._known: dict[int, KnownRows] = {}  # rows this process's batches wrote, by partition
        # Batches read ahead, their rows built while the batch before them was written, and
        # the connection (one per partition, not the lease's) that read their keys.
        self._prepared: dict[_BatchKey, _Prepared] = {}
        self._key_readers: dict[int, asyncpg.Connection] = {}
        # Per partition, the keys (id -> wrapped) issued in the batch last prepared: the next
        # batch is prepared while that one is written, before user_keys holds them.
        self._issued: dict[int, dict[str, str]] = {}

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
        self._prepared = {k: v for k, v in self._prepared.items() if k[0] != partition}
        self._issued.pop(partition, None)
        reader = self._key_readers.pop(partition, None)
        if reader is not None:
            await reader.close()
        connection = self._connections.pop(partition, None)
        if connection is not None:
            await connection.close()  # closing the session releases the advisory lock

    async def prepare(self, deliveries: list[Delivery]) -> None:
        """Build a batch's rows before its transaction (the runtime reads one batch ahead),
        so only the writing is left for it. Keys come from user_keys as it is now; ``handle``
        looks again, inside its transaction, for those not found (the batch being written may
        store them). Any failure just leaves the batch to be built in ``handle``."""
        partition = deliveries[0].partition
        events = [d.event for d in deliveries]
        issued_before = self._issued.get(partition, {})
        owners = key_owners(events) if self.master is not None else {}
        self._issued[partition] = {e.key_id: e.wrapped_key for e in events
                                   if isinstance(e, UserKeyIssued)}
        kept = (self._kept_keyring(events, owners, issued_before)
                if len(deliveries) <= FEW_ROWS and self._unwrapped is not None else None)
        if kept is not None:  # no query now: its transaction asks user_keys (``handle``)
            keyring, missing, pending = kept[0], [], kept[1]
        else:
            try:
                async with asyncio.timeout(PREPARE_TIMEOUT_S):
                    reader = self._key_readers.get(partition)
                    if reader is None or reader.is_closed():
                        reader = await asyncpg.connect(self.database_url)
                        self._key_readers[partition] = reader
                    keyring = await durable_keyring(events, reader, self.master,
                                                    self._unwrapped, wanted=owners)
            except Exception:  # noqa: BLE001 - best effort; asyncpg also raises
                # InternalClientError (seen with PostgreSQL down: "another operation is in
                # progress"), none of its PostgresError/InterfaceError. ``handle`` builds it.
                broken = self._key_readers.pop(partition, None)
                if broken is not None:
                    broken.terminate()
                return
            missing = [k for k in owners if k not in keyring] if self.master is not None else []
            lent = {k: self._unwrapped.unwrap(issued_before[k], k) for k in missing
                    if k in issued_before} if self._unwrapped is not None else {}
            if lent:
                keyring = {**keyring, **lent}
                missing = [k for k in missing if k not in lent]
            pending = list(lent)
        changes = RowChanges(keyring=keyring)
        for start in range(0, len(deliveries), YIELD_EVERY):
            if start:  # let the batch being written send its next statement meanwhile
                await asyncio.sleep(0)
            for delivery in deliveries[start:start + YIELD_EVERY]:
                changes.add(partition, delivery.entry_id, delivery.event, delivery.body)
        while len(self._prepared) >= 2:  # a batch never handled (adopted, stopped): drop it
            del self._prepared[next(iter(self._prepared))]
        # A read's entries come in log order (XREADGROUP, then the linger's later read).
        self._prepared[_batch_key(deliveries)] = _Prepared(
            changes, entry_position(deliveries[0].entry_id),
            entry_position(deliveries[-1].entry_id), missing, pending)

    def _kept_keyring(self, events: list[AnyEvent], owners: dict[str, str],
                      issued_before: dict[str, str]) -> tuple[dict[str, DataKey], list[str]] | None:
        """A small batch's keys with no query: those it issues itself, and the others kept
        from earlier batches or issued by the batch before; None when one is not at hand.
        Those others are the batch's pending keys: its rows stand only if user_keys holds
        every one of them inside its transaction, as for keys lent by the batch before."""
        assert self._unwrapped is not None
        unwrapped = self._unwrapped
        ring = own_keys(events, owners, unwrapped)
        checked = [k for k in owners if k not in ring]
        held = unwrapped.held(checked)
        for key_id in checked:
            if key_id in held:
                ring[key_id] = unwrapped.opening_key(key_id, held[key_id])
            elif key_id in issued_before:
                ring[key_id] = unwrapped.unwrap(issued_before[key_id], key_id)
            else:
                return None
        return ring, checked

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
                ahead = self._prepared.get(_batch_key(deliveries))
                asked = (ahead.missing_keys + ahead.pending_keys
                         if ahead is not None and self.master is not None else [])
                checkpoint, stored = await _checkpoint_and_keys(connection, partition, asked)
                known.trust_at(checkpoint)
                prepared = self._take_prepared(deliveries, checkpoint, stored)
                if prepared is not None:
                    changes, last = prepared.changes, prepared.last
                else:
                    changes, last = await self._build(deliveries, checkpoint, connection)
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

    def _take_prepared(self, deliveries: list[Delivery], checkpoint: Position,
                       stored: set[str]) -> _Prepared | None:
        """The rows ``prepare`` built for this very batch, if they still hold: every entry
        past the checkpoint, no key it missed is in user_keys now, and every key it took
        without asking then (lent by the batch before, or kept) is (``stored``: which of
        those user_keys holds, read in this transaction)."""
        prepared = self._prepared.pop(_batch_key(deliveries), None)
        if prepared is None or prepared.first <= checkpoint:
            return None
        if not (prepared.missing_keys or prepared.pending_keys) or self.master is None:
            return prepared
        if any(k in stored for k in prepared.missing_keys):
            return None  # stored since (by the batch before): open the content with it
        if any(k not in stored for k in prepared.pending_keys):
            if self._unwrapped is not None:
                self._unwrapped.forget([k for k in prepared.pending_keys if k not in stored])
            return None  # not stored (that batch did not commit) or destroyed since
        return prepared

    async def _build(self, deliveries: list[Delivery], checkpoint: Position,
                     connection: asyncpg.Connection) -> tuple[RowChanges, Position]:
        """The rows of the entries past ``checkpoint``, and the last position among them."""
        partition = deliveries[0].partition
        changes = RowChanges(keyring=await durable_keyring(
            (d.event for d in deliveries), connection, self.master, self._unwrapped))
        last = checkpoint
        for delivery in deliveries:
            position = entry_position(delivery.entry_id)
            if position <= checkpoint:
                continue
            changes.add(partition, delivery.entry_id, delivery.event, delivery.body)
            last = max(last, position)
        return changes, last

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
        for partition in list(self._connections) + list(self._key_readers):
            await self.release_partition(partition)


async def _checkpoint_and_keys(connection: asyncpg.Connection, partition: int,
                               key_ids: list[str]) -> tuple[Position, set[str]]:
    """The partition's checkpoint and which of ``key_ids`` user_keys holds, in one statement
    (so in one snapshot, taken after the swap lock); ``read_checkpoint`` when none is asked."""
    if not key_ids:
        return await read_checkpoint(connection, partition), set()
    row = await connection.fetchrow(
        "SELECT c.last_ms, c.last_seq, "
        "ARRAY(SELECT key_id FROM user_keys WHERE key_id = ANY($3::text[])) AS stored "
        "FROM (SELECT 1) AS one LEFT JOIN projection_checkpoints AS c "
        "ON c.projection = $1 AND c.partition = $2", PROJECTOR, partition, key_ids)
    checkpoint = (NOTHING_APPLIED if row["last_ms"] is None
                  else (row["last_ms"], row["last_seq"]))
    return checkpoint, set(row["stored"])


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
