"""Fixtures for tests on a private six-node Redis Cluster, started once per test session.

``settings`` and ``redis`` replace the suite's single-Redis ones: the same services, six
partitions, spread over three masters. The fakes of Graph and Groq come from the integration
fixtures. ``replica_stopped`` leaves a master without its only replica for a while (what
``MECOVE_REDIS_MIN_REPLICAS=1`` must refuse).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import msgspec
import pytest
from redis.asyncio import RedisCluster

from app.devtools.private_cluster import PrivateCluster
from app.platform.settings import Settings
from tests.integration.conftest import graph, groq, pool, reply_settings

__all__ = ["graph", "groq", "pool", "replica_stopped", "reply_settings"]

PARTITIONS = 6


@pytest.fixture(scope="session")
def cluster() -> Iterator[PrivateCluster]:
    started = PrivateCluster()
    try:
        started.start()
        yield started
    finally:
        started.destroy()


@pytest.fixture
def settings(settings: Settings, cluster: PrivateCluster) -> Settings:
    """The suite's test settings on the cluster, with six partitions."""
    return msgspec.structs.replace(settings, redis_url=cluster.url, partitions=PARTITIONS)


@pytest.fixture
async def redis(cluster: PrivateCluster, key_prefix: str) -> AsyncIterator[RedisCluster]:
    """A cluster client; every key under this test's prefix is deleted afterwards. Its
    timeouts are the service's (``open_redis``): a node that stops answering fails the
    command instead of hanging the test."""
    client = RedisCluster.from_url(cluster.url, socket_connect_timeout=2, socket_timeout=10)
    yield client
    try:
        async for key in client.scan_iter(match=f"{key_prefix}:*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


@contextmanager
def replica_stopped(cluster: PrivateCluster, master: int) -> Iterator[None]:
    """``master``'s only replica stopped inside the block; on exit it is started again and
    the cluster is healthy (the replica caught up) before the test goes on."""
    [replica] = cluster.masters()[master]
    cluster.stop(replica)
    try:
        yield
    finally:
        cluster.start_node(replica)
        cluster.wait_healthy()
