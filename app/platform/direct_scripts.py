"""Script calls on a single Redis sent down a connection held aside, past redis-py's per-call work.

For every command, redis-py 8's ``execute_command`` takes a connection from the blocking pool (a
condition, a timeout context, awaited observability counters), runs the call inside its retry
helper, records the call's duration and gives the connection back (an event dispatch, more
counters). For the ingress's one script call per batch that cost more CPU than sending and
reading the call itself (``bench/README.md``, "Ingress, third pass"). ``DirectScripts`` keeps
a few of the pool's own connections aside and sends ``EVALSHA`` on one of them, packed by
hiredis, its reply read by the connection's parser: the same bytes out and the same reply as
redis-py's path.

Anything off that path goes to redis-py, which then behaves exactly as before: a connection
error or timeout (the connection is closed, and redis-py's call retries as it always does: the
scripts sent this way are safe to run again), ``NOSCRIPT`` (redis-py loads the script and calls
it again), and every client that is not a plain ``Redis`` on a ``HiredisPackedConnection``
pool (a cluster, ``rediss://``). A cancelled call closes its connection, whose reply would
otherwise be read by the next call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.platform.redis_packing import UTF8, HiredisPackedConnection

__all__ = ["DirectScripts"]

KEPT_ASIDE = 8  # idle connections kept out of the pool; more concurrent calls borrow and return

Arg = str | bytes | int | float


class DirectScripts:
    """``await run(script, keys, args)`` == ``await script(keys=keys, args=args)``, cheaper."""

    def __init__(self, client: Any) -> None:
        self._client = client
        pool = getattr(client, "connection_pool", None)
        self.enabled = (
            isinstance(client, Redis)
            and client.connection is None  # not a single-connection client
            and pool is not None
            and issubclass(pool.connection_class, HiredisPackedConnection)
            and pool.get_encoder().encoding in UTF8
        )
        self._idle: list[AbstractConnection] = []

    async def run(self, script: AsyncScript, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """The script's reply; raises what redis-py's call would."""
        if not self.enabled:
            return await script(keys=keys, args=args, client=self._client)
        try:
            packed = hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
        except (TypeError, ValueError, UnicodeError):
            return await script(keys=keys, args=args, client=self._client)  # redis-py decides
        pool = self._client.connection_pool
        connection = (self._idle.pop() if self._idle
                      else await _connecting(pool.get_connection()))
        try:
            if not _written_at_once(connection, packed):
                await connection.send_packed_command([packed], check_health=True)
            reply = await connection.read_response()
        except (NoScriptError, RedisConnectionError, RedisTimeoutError, OSError):
            await self._give_back(connection)
            return await _connecting(script(keys=keys, args=args, client=self._client))
        except ResponseError:
            await self._give_back(connection)  # the script's own error: the stream is in step
            raise
        except BaseException:
            # A reply may still be on its way (cancelled) or the stream out of step: never
            # hand this connection to another call as it is.
            await connection.disconnect(nowait=True)
            await self._give_back(connection)
            raise
        await self._give_back(connection)
        return reply

    async def _give_back(self, connection: AbstractConnection) -> None:
        if connection.is_connected and len(self._idle) < KEPT_ASIDE:
            self._idle.append(connection)
        else:
            await self._client.connection_pool.release(connection)

    async def aclose(self) -> None:
        """Return the connections kept aside to the pool."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._client.connection_pool.release(connection)


def _written_at_once(connection: AbstractConnection, packed: bytes) -> bool:
    """Write ``packed`` as ``send_packed_command`` would, when that needs no waiting: the
    connection is open, no health check is due, and its transport holds nothing unsent (so
    ``drain`` would return at once). redis-py's path otherwise: with a ``socket_timeout`` it
    wraps ``drain`` in ``asyncio.wait_for``, a task per call even when nothing waits."""
    # getattr: redis-py's own names; a version without them takes redis-py's path.
    writer = getattr(connection, "_writer", None)  # what send_packed_command writes to
    if writer is None or not connection.is_connected:
        return False
    transport = writer.transport
    if transport.is_closing() or transport.get_write_buffer_size():
        return False
    if getattr(connection, "health_check_interval", 1) and asyncio.get_running_loop().time() \
            > getattr(connection, "next_health_check", float("-inf")):
        return False
    try:
        writer.write(packed)
    except RuntimeError:  # uvloop: a transport closed meanwhile; redis-py's path raises
        return False
    return True


async def _connecting(call: Awaitable[Any]) -> Any:
    """``await call``, where a connection may be opened: a ``RuntimeError`` is raised as the
    ``ConnectionError`` it is. When Redis dies while redis-py opens a connection, uvloop may
    refuse the handshake's write on the transport it has just closed ("unable to perform
    operation on <TCPTransport closed=True ...>"), which redis-py lets through as it is; the
    ingress answers a ``ConnectionError`` with 503 (Meta redelivers; the dedupe key makes a
    redelivery of an append that did land safe), anything else with 500."""
    try:
        return await call
    except RuntimeError as exc:
        raise RedisConnectionError(f"Redis connection failed while opening: {exc}") from exc

