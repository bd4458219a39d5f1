"""A minimal HTTP/1.1 client for load generation: keep-alive POSTs on plain asyncio streams.

A load generator must cost far less than the server it measures. httpx's connection pool
re-scans every connection for every request (quadratic once hundreds are in flight), which
turned the e2e sender itself into the bottleneck; this client keeps idle connections in a
list and does nothing else. It speaks just what our servers answer: a status line, headers,
and a body framed by Content-Length or chunked encoding.
"""

from __future__ import annotations

import asyncio
import time

from bench.closed_on_exit import ClosedOnExit

_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
# uvicorn closes a keep-alive connection after 5 s idle; reusing one the server is closing
# would fail the request, so connections idle this long are dropped instead.
MAX_IDLE_S = 2.0


class HttpError(Exception):
    """The server closed the connection or answered something that is not HTTP/1.1."""


class RawHttpClient(ClosedOnExit):
    """Keep-alive connections to one ``host:port``; any number of requests in flight."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._idle: list[tuple[float, _Connection]] = []
        self._open: set[asyncio.StreamWriter] = set()

    async def aclose(self) -> None:
        """Close every connection, idle or in use."""
        writers = list(self._open)
        self._open.clear()
        self._idle.clear()
        for writer in writers:
            writer.close()
        for writer in writers:
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        """POST ``body``; returns the status once the whole answer is read."""
        head = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        connection = await self._take()
        reader, writer = connection
        try:
            writer.write(request)
            status, keep_alive = await self._read_response(reader)
        except BaseException:
            self._discard(writer)
            raise
        if keep_alive:
            self._idle.append((time.monotonic(), connection))
        else:
            self._discard(writer)
        return status

    async def _take(self) -> _Connection:
        """The most recently used idle connection still fresh, else a new one."""
        now = time.monotonic()
        while self._idle:
            used_at, connection = self._idle.pop()
            if now - used_at < MAX_IDLE_S and not connection[0].at_eof():
                return connection
            self._discard(connection[1])
        return await self._connect()

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._open.add(writer)
        return reader, writer

    def _discard(self, writer: asyncio.StreamWriter) -> None:
        self._open.discard(writer)
        writer.close()

    @staticmethod
    async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise HttpError("connection closed before an answer") from exc
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"not an HTTP/1.x status line: {lines[0]!r}")
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip().lower()
        if fields.get("transfer-encoding", "") == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await reader.readexactly(int(fields.get("content-length", "0")))
        keep_alive = fields.get("connection", "") != "close" and parts[0] == "HTTP/1.1"
        return int(parts[1]), keep_alive
