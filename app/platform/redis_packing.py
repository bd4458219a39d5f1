"""Redis commands packed by hiredis (C) instead of redis-py's per-argument Python loop.

redis-py's asyncio connection packs every command in Python: one ``Encoder.encode`` and a few
joins per argument. An ingress script call carries a dozen arguments per message, and under
load that packing cost more CPU than the Lua it runs. hiredis (already redis-py's reply
parser here) packs the same bytes in C. Anything it does not pack exactly as redis-py would
goes to redis-py's own ``pack_command`` unchanged: a command name with a space in it
(``CONFIG GET``), an argument hiredis refuses (redis-py then raises its usual ``DataError``),
and connections whose encoding is not UTF-8. Only ``redis://`` pools use it: redis-py's
``from_url`` keeps its own classes for ``rediss://`` and unix sockets.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio.connection import Connection

__all__ = ["HiredisPackedConnection"]

UTF8 = frozenset({"utf-8", "utf8", "UTF-8", "UTF8"})


class HiredisPackedConnection(Connection):
    """A redis-py asyncio TCP connection whose commands hiredis packs."""

    def pack_command(self, *args: Any) -> list[bytes]:
        command = args[0]
        if self.encoder.encoding in UTF8 and (
            (isinstance(command, str) and " " not in command)
            or (isinstance(command, bytes) and b" " not in command)
        ):
            try:
                return [hiredis.pack_command(args)]
            except (TypeError, ValueError, UnicodeError):
                pass  # redis-py decides: it raises its own error for what it cannot send
        return super().pack_command(*args)
