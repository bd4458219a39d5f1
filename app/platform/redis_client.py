"""Redis clients: one pooled client for commands, dedicated ones for blocking reads."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def _retry() -> Retry:
    """Two quick retries on a dropped connection (e.g. pooled sockets after a Redis restart).
    Safe for our writes: the append script is idempotent (SET NX), the reply record is
    guarded, and the other appends are deduplicated downstream by their deterministic ids."""
    return Retry(ExponentialBackoff(cap=0.2, base=0.02), 2)


def open_redis(redis_url: str, *, max_connections: int = 64) -> Redis:
    """A pooled client for short commands (never for blocking reads).

    The pool blocks (up to 5 s) for a free connection instead of refusing: a burst of more
    concurrent webhooks than connections must queue, not turn into 503s.
    """
    pool = BlockingConnectionPool.from_url(
        redis_url,
        max_connections=max_connections,
        timeout=5,
        socket_connect_timeout=2,
        socket_keepalive=True,
        health_check_interval=30,
        retry=_retry(),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


def open_blocking_reader(redis_url: str, *, block_ms: int) -> Redis:
    """A single-connection client for one blocking XREADGROUP loop.

    Blocking reads get their own connection: sharing a pooled connection with other
    commands stalls them for the whole block (see redis-py's asyncio issues).
    """
    return Redis.from_url(
        redis_url,
        single_connection_client=True,
        socket_connect_timeout=2,
        socket_timeout=block_ms / 1000 + 5,
        socket_keepalive=True,
    )
