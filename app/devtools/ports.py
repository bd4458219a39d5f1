"""Picking a local TCP port for a server we are about to start."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listened on a moment ago (the kernel's choice).

    Another process may take it before our server binds it; callers that can bind port 0
    themselves should do that instead.
    """
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
