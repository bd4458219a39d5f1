"""The plain client on one cluster node (``node_client``): the cluster's connection
settings, and a refused connection fails at once rather than after redis-py's default
ten retries (a dead master must turn into a 503 or a slot-table reload, not a stall)."""

from __future__ import annotations

import socket
import time

import pytest
from redis.asyncio import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from app.platform.redis_client import node_client


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cluster(port: int) -> RedisCluster:
    """A cluster client that has not connected yet (construction opens no socket)."""
    return RedisCluster(host="127.0.0.1", port=port, password="s3cret",
                        socket_connect_timeout=2, socket_timeout=7)


def test_a_node_client_has_the_cluster_connection_settings() -> None:
    client = node_client(_cluster(_closed_port()), "127.0.0.1", 7001)
    settings = client.get_connection_kwargs()
    assert (settings["host"], settings["port"]) == ("127.0.0.1", 7001)
    assert settings["password"] == "s3cret"
    assert (settings["socket_connect_timeout"], settings["socket_timeout"]) == (2, 7)


async def test_a_node_client_gives_up_on_a_refused_connection_within_a_second() -> None:
    port = _closed_port()
    client = node_client(_cluster(port), "127.0.0.1", port)
    started = time.monotonic()
    try:
        with pytest.raises(RedisConnectionError):
            await client.ping()
    finally:
        await client.aclose()
    assert time.monotonic() - started < 1.0
