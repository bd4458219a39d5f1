"""The private cluster's start-up (app/devtools/private_cluster.py) when something is wrong:
it fails at once with the node's log, and never settles for a server that is not its own."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from app.devtools import private_cluster
from app.devtools.private_cluster import BUS_OFFSET, START_TIMEOUT_S, PrivateCluster


@pytest.fixture
def unstarted() -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


def test_node_ports_and_their_bus_ports_are_free_and_below_the_ephemeral_range() -> None:
    ports = private_cluster._free_node_ports(6)
    first_ephemeral = private_cluster._first_ephemeral_port()
    assert len(set(ports)) == 6
    assert all(private_cluster.LOWEST_PORT <= p and p + BUS_OFFSET < first_ephemeral
               for p in ports)


def test_a_node_whose_port_is_taken_fails_at_once_with_its_log(
    unstarted: PrivateCluster,
) -> None:
    port = next(iter(unstarted.nodes))
    unstarted.nodes[port].folder.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=f"redis-server on port {port} exited") as raised:
            unstarted.start_node(port)
    assert time.monotonic() - started < START_TIMEOUT_S
    assert "Address already in use" in str(raised.value)  # the node's own log says why
