"""Redis clients: one pooled client for commands, dedicated ones for blocking reads.

``REDIS_URL`` may name a single Redis or any node of a Redis (or Valkey) Cluster: ``connect``
asks the node (``INFO cluster``) and opens redis-py's ``RedisCluster`` or the plain client.
Every caller then talks to ``RedisClient`` and sends only commands whose keys share one slot
(the partition's hash tag), which both clients route the same way; the cluster client follows
``MOVED``/``ASK`` and refreshes its slot table after a failover.

``SlotWriter`` gives the plain client of the master owning a key, for a write that must be
followed by ``WAIT`` on the very same connection (``WAIT`` counts the replicas that reached
that connection's last write). ``DurableWrites`` is the one place that pairs them: every write
``MECOVE_REDIS_MIN_REPLICAS`` covers (event appends, identity links, reply claims and
outcomes) goes through it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    MovedError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.platform.direct_scripts import DirectScripts
from app.platform.redis_packing import HiredisPackedConnection

__all__ = ["REDIS_ERRORS", "DurableWrites", "RedisClient", "ReplicaShortfall", "SlotWriter",
           "cluster_enabled", "connect", "node_client", "open_blocking_reader", "open_redis"]

log = logging.getLogger("mecove.redis")

PROBE_ATTEMPTS = 3

RedisClient = Redis | RedisCluster
"""Either client: both route a single-slot command to the node that owns its keys."""


REDIS_ERRORS = (RedisError, RedisClusterException, OSError)
"""What a call to either client raises when Redis cannot answer (the cluster client raises
``RedisClusterException``, not a ``RedisError``, while it cannot map a slot)."""


class ReplicaShortfall(RedisError):
    """Fewer replicas than required acknowledged a write within the wait timeout.

    A ``RedisError``, so the ingress answers 503 and Meta redelivers."""


def _retry() -> Retry:
    """Two quick retries on a dropped connection (e.g. pooled sockets after a Redis restart).
    Safe for our writes: the append script is idempotent (SET NX), the reply record is
    guarded, and the other appends are deduplicated downstream by their deterministic ids."""
    return Retry(ExponentialBackoff(cap=0.2, base=0.02), 2)


def _cluster_retry() -> Retry:
    """Retries that outlast a failover's first errors: each one refreshes the slot table."""
    return Retry(ExponentialBackoff(cap=0.5, base=0.05), 3)


async def cluster_enabled(redis_url: str) -> bool:
    """Whether the node at ``redis_url`` runs in cluster mode (``INFO cluster``)."""
    probe = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        info = await probe.info("cluster")
    finally:
        await probe.aclose()
    return bool(int(info.get("cluster_enabled", 0)))


async def connect(redis_url: str, *, max_connections: int = 64,
                  must_answer: bool = False) -> RedisClient:
    """The pooled client for ``redis_url``: a ``RedisCluster`` when the node is part of a
    cluster, else the plain client.

    A node that does not answer within a few attempts gets the plain client, with a warning:
    a process may start while Redis is down and wait for it (as the consumers do). With
    ``must_answer`` (a one-shot command) the probe's error is raised at once instead."""
    for attempt in range(PROBE_ATTEMPTS):
        try:
            cluster = await cluster_enabled(redis_url)
            break
        except (RedisError, OSError) as exc:
            if must_answer:
                raise
            if attempt == PROBE_ATTEMPTS - 1:
                log.warning("redis does not answer: using the single-node client; restart "
                            "once it answers if it is a cluster",
                            extra={"fields": {"error": type(exc).__name__}})
                cluster = False
            else:
                await asyncio.sleep(0.5)
    return open_redis(redis_url, max_connections=max_connections, cluster=cluster)


def open_redis(redis_url: str, *, max_connections: int = 64,
               cluster: bool = False) -> RedisClient:
    """A pooled client for short commands (never for blocking reads).

    The plain pool blocks (up to 5 s) for a free connection instead of refusing: a burst of
    more concurrent webhooks than connections must queue, not turn into 503s. The cluster
    client keeps a pool per node of ``max_connections``.
    """
    if cluster:
        return RedisCluster.from_url(
            redis_url,
            max_connections=max_connections,
            socket_connect_timeout=2,
            socket_timeout=10,
            socket_keepalive=True,
            retry=_cluster_retry(),
        )
    pool = BlockingConnectionPool.from_url(
        redis_url,
        max_connections=max_connections,
        timeout=5,
        socket_connect_timeout=2,
        socket_keepalive=True,
        health_check_interval=30,
        retry=_retry(),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        connection_class=HiredisPackedConnection,  # redis:// only: from_url keeps rediss' own
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


def open_blocking_reader(redis_url: str, *, block_ms: int, cluster: bool = False) -> RedisClient:
    """A client for one blocking XREADGROUP loop, whose XREADGROUP replies come unparsed.

    Blocking reads get their own connection: sharing a pooled connection with other
    commands stalls them for the whole block (see redis-py's asyncio issues). On a cluster
    the reader is a ``RedisCluster`` of its own, which sends the read to the master owning
    the stream and re-routes it after ``MOVED`` or a failover.

    ``xreadgroup`` returns the reply as hiredis made it (``entries.reply_entries`` reads it):
    redis-py's parse builds a tuple and a dict per entry that the runtime turned into its
    own shape anyway (decision 0022).
    """
    socket_timeout = block_ms / 1000 + 5
    reader: RedisClient
    if cluster:
        reader = RedisCluster.from_url(
            redis_url,
            max_connections=4,
            socket_connect_timeout=2,
            socket_timeout=socket_timeout,
            socket_keepalive=True,
            retry=_cluster_retry(),
        )
    else:
        reader = Redis.from_url(
            redis_url,
            single_connection_client=True,
            socket_connect_timeout=2,
            socket_timeout=socket_timeout,
            socket_keepalive=True,
        )
    reader.set_response_callback("XREADGROUP", _unparsed)
    return reader


def _unparsed(reply: Any, **_options: Any) -> Any:
    return reply


_PLAIN_CLIENT_PARAMETERS = frozenset(inspect.signature(Redis.__init__).parameters)
_PER_NODE_PARAMETERS = frozenset({"host", "port", "retry", "retry_on_error"})


def node_client(cluster: RedisCluster, host: str, port: int) -> Redis:
    """A plain client on one node of ``cluster``, with the cluster's connection settings
    (AUTH, TLS, timeouts) and ``_retry``'s two quick retries.

    Not redis-py's default retry (10 attempts, backoff up to 1 s, about 4 s on a refused
    connection): a master that died must fail the write at once, so the caller reloads the
    slot table or answers 503 instead of holding the webhook through the failover."""
    connection_kwargs = cluster.get_connection_kwargs()
    kwargs: dict[str, Any] = {
        name: value for name, value in connection_kwargs.items()
        if name in _PLAIN_CLIENT_PARAMETERS and name not in _PER_NODE_PARAMETERS}
    if connection_kwargs.get("connection_class") is SSLConnection:
        kwargs["ssl"] = True  # rediss:// reaches the cluster as a connection class
    return Redis(host=host, port=port, retry=_retry(), **kwargs)


class SlotWriter:
    """Plain clients on the masters, one per master, for writes followed by ``WAIT``.

    On a single Redis it is that client. On a cluster it reads the cluster client's slot
    table; ``refresh`` sends a keyed read through the cluster client, which follows ``MOVED``
    and reloads the table after a failover.
    """

    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self._masters: dict[str, Redis] = {}

    async def for_key(self, key: str) -> Redis:
        """The plain client of the master that owns ``key``'s slot; RedisConnectionError
        when the slot table names none (the cluster is failing over)."""
        if not isinstance(self.client, RedisCluster):
            return self.client
        await self.client.initialize()  # loads the slot table once, then returns at once
        try:
            node = self.client.get_node_from_key(key)
        except SlotNotCoveredError as exc:
            raise RedisConnectionError(f"no master owns the slot of {key}") from exc
        if node is None:
            raise RedisConnectionError(f"no master owns the slot of {key}")
        master = self._masters.get(node.name)
        if master is None:
            master = node_client(self.client, node.host, node.port)
            self._masters[node.name] = master
        return master

    async def refresh(self, key: str) -> None:
        """Reload where ``key`` lives (cluster only); errors are the caller's next attempt.

        ``TYPE``, one key: redis-py sends even a one-key ``EXISTS`` as a cluster pipeline,
        whose every retry closes all the client's connections and sleeps 0.25 s."""
        if isinstance(self.client, RedisCluster):
            try:
                await self.client.type(key)
            except (RedisError, OSError):
                pass

    async def aclose(self) -> None:
        """Close the per-master clients (the cluster client is closed by its owner)."""
        for master in self._masters.values():
            await master.aclose()
        self._masters.clear()


Queue = Callable[[Any], Awaitable[object]]
"""Queues one or more commands of one slot on a pipeline (awaited: scripts queue that way)."""


class DurableWrites:
    """Writes that count only once ``min_replicas`` replicas have them (``WAIT``).

    With ``min_replicas`` 0 a write goes through the shared client as usual. Above 0 it goes,
    followed by ``WAIT k timeout``, down one connection to the master owning its key
    (``SlotWriter``), and ``ReplicaShortfall`` is raised when fewer replicas acknowledged it in
    time; a ``MOVED``/``ASK`` or a lost master reloads the slot table and tries once more.

    ``WAIT`` covers what the connection *propagated*: a step that may find its work already
    done by an earlier, unconfirmed call (a duplicate append, an existing identity link) must
    still write something, or its ``WAIT`` would not cover what it found.
    """

    def __init__(self, client: RedisClient, *, min_replicas: int = 0,
                 wait_timeout_ms: int = 500) -> None:
        self.client = client
        self.min_replicas = min_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._writer = SlotWriter(client)
        self._direct = DirectScripts(client)

    async def script(self, key: str, script: AsyncScript, keys: Sequence[str | bytes],
                     args: Sequence[str | bytes | int | float]) -> Any:
        """Call ``script`` (its keys all on ``key``'s slot), durably; its reply. Without
        replicas to wait for, on a single Redis, it goes down a connection held aside
        (``DirectScripts``), not through redis-py's per-command work."""
        if self.min_replicas == 0:
            return await self._direct.run(script, keys, args)
        return await self.write(key, lambda client: script(keys=keys, args=args, client=client))

    async def write(self, key: str,
                    command: Callable[[RedisClient | Pipeline], Awaitable[Any]]) -> Any:
        """Run ``command`` (one command or script call on ``key``'s slot); its reply."""
        if self.min_replicas == 0:
            return await command(self.client)
        return (await self._on_master(key, command))[0]

    async def pipeline(self, key: str, queue: Queue) -> list[Any]:
        """Run the commands ``queue`` adds (all on ``key``'s slot) in one round trip; their
        replies in order."""
        if self.min_replicas == 0:
            async with self.client.pipeline(transaction=False) as pipe:
                await queue(pipe)
                return list(await pipe.execute())
        return await self._on_master(key, queue)

    async def _on_master(self, key: str, queue: Queue) -> list[Any]:
        for attempt in (1, 2):
            try:
                master = await self._writer.for_key(key)
                async with master.pipeline(transaction=False) as pipe:
                    await queue(pipe)
                    pipe.wait(self.min_replicas, self.wait_timeout_ms)
                    *replies, replicas = await pipe.execute()
            except (MovedError, AskError, RedisConnectionError):
                await self._writer.refresh(key)
                if attempt == 2:
                    raise
                continue
            if int(replicas) < self.min_replicas:
                raise ReplicaShortfall(f"{replicas} of {self.min_replicas} replicas acknowledged "
                                       f"the write within {self.wait_timeout_ms} ms")
            return replies
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close the per-master connections and return those held aside (the client passed
        in stays open)."""
        await self._direct.aclose()
        await self._writer.aclose()
