"""What a consumer-group handler is: the interface the projector, replier and summarizer implement.

A handler receives batches of ``Delivery`` and says, per delivery, whether it is done (``None``)
or failed (the exception). The runtime does everything else: reading, acking, retrying,
reclaiming and dead-lettering. Which runtime runs it follows from the protocol it implements:

* ``GroupHandler``: the group spreads every partition over all its consumers (``SharedRuntime``).
* ``OrderedHandler``: one consumer at a time holds a partition's lease, so entries apply in log
  order (``OrderedRuntime``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import msgspec

from schema.events import AnyEvent

__all__ = ["Delivery", "GroupHandler", "OrderedHandler"]


class Delivery(msgspec.Struct, gc=False):
    """One event handed to a handler, with its 1-based attempt number.

    A Struct, made per entry read: its ``__init__`` is C, a third of a dataclass's. Not
    tracked by the garbage collector (``gc=False``): it holds an immutable event and plain
    values, so no cycle runs through it."""

    partition: int
    entry_id: str
    event: AnyEvent
    attempt: int
    operator_retry: bool = False  # put back by `mecove dlq retry`
    body: bytes | None = None  # the event's body as the entry holds it (the projector archives it)


@runtime_checkable
class GroupHandler(Protocol):
    """A handler whose group spreads every partition over all its consumers."""

    group: str
    """The consumer group's name; also names its retry schedule and metrics."""
    min_batch_size: int
    """The smallest batch it wants; the configured batch size applies when larger."""

    async def start(self) -> None:
        """Start background work before the first delivery (e.g. a sweeper)."""
        ...

    async def close(self) -> None:
        """Release what ``start`` and handling opened; called once the runtime has stopped."""
        ...

    async def handle(self, deliveries: list[Delivery]) -> Sequence[BaseException | None]:
        """Handle a batch; one outcome per delivery (None = done). May raise for all."""
        ...

    async def on_dead_letter(self, delivery: Delivery, error: BaseException | str) -> None:
        """Called once an entry is given up on (e.g. the replier appends ReplyFailed)."""
        ...


@runtime_checkable
class OrderedHandler(GroupHandler, Protocol):
    """A handler that must see each partition in log order, one consumer at a time."""

    async def acquire_partition(self, partition: int, stop: asyncio.Event) -> bool:
        """Wait for the partition's lease; True once held, False when ``stop`` is set first."""
        ...

    async def release_partition(self, partition: int) -> None:
        """Give the partition's lease up so another consumer can take over."""
        ...

    async def prepare(self, deliveries: list[Delivery]) -> None:
        """Work on a batch read ahead that needs neither the lease nor the order (e.g. build
        its rows), run while the batch before it is handled; ``handle`` may use it or not.
        Must not raise. None by default."""
        return None
