"""Responses that leave in one write: the status line and headers go out with the body.

uvicorn's httptools protocol writes a response's head when the app sends
``http.response.start`` and its body at ``http.response.body``: on uvloop that is two
``send()`` calls per response, each a trip through the kernel's TCP stack, and the client is
woken for a head it cannot use without the body (decision 0036). ASGI lets a server hold the
head until the first body message. ``OneWriteHttpToolsProtocol`` is uvicorn's protocol with
its transport wrapped in ``OneWriteTransport``: a small write is held until the next write,
which takes it along in one ``writelines`` (one ``writev``), or until the end of the
event-loop turn, so a head whose body comes later leaves as before. Nothing else changes:
bytes keep their order, close flushes first, and at most ``HELD_AT_MOST`` bytes are held.

``mecove api`` names the protocol in ``UVICORN_OPTIONS`` as an import string when httptools
is installed (uvicorn's ``auto`` picks httptools then too), else keeps ``auto``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HELD_AT_MOST", "OneWriteHttpToolsProtocol", "OneWriteTransport"]

HELD_AT_MOST = 4096  # a response head; a larger write goes out at once

Data = bytes | bytearray | memoryview


class OneWriteTransport(asyncio.Transport):
    """``transport`` with a small write held for the next one (see the module docstring)."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._flush_scheduled = False

    def write(self, data: Data) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif len(data) <= HELD_AT_MOST and not self._transport.is_closing():
            self._held = bytes(data)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush_at_turn_end)
        else:
            self._transport.write(data)

    def writelines(self, list_of_data: Iterable[Data]) -> None:
        self.flush()
        self._transport.writelines(list_of_data)

    def flush(self) -> None:
        """Write what is held now."""
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held)

    def _flush_at_turn_end(self) -> None:
        self._flush_scheduled = False
        if not self._transport.is_closing():
            self.flush()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, its responses written once (``OneWriteTransport``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(OneWriteTransport(transport, self.loop))
