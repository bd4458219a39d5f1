"""A response's head leaves with its body (``OneWriteTransport``), bytes in order, nothing kept."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest
import uvicorn

from app.cli import UVICORN_OPTIONS
from app.ingress.one_write_responses import (
    HELD_AT_MOST,
    OneWriteHttpToolsProtocol,
    OneWriteTransport,
)


class RecordingTransport(asyncio.Transport):
    """The calls a real transport would get, each write as one item (one send)."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sends.append(bytes(data))

    def writelines(self, list_of_data: object) -> None:
        self.sends.append(b"".join(bytes(part) for part in list_of_data))  # type: ignore[attr-defined]

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted


async def turns(count: int = 2) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_head_and_its_body_leave_in_one_send() -> None:
    real = RecordingTransport()
    transport = OneWriteTransport(real, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n")
    assert real.sends == []  # held for the body
    transport.write(b'{"ok": true}')
    assert real.sends == [b'HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n{"ok": true}']
    await turns()
    assert len(real.sends) == 1  # the end of the turn finds nothing held


async def test_a_head_without_a_body_in_the_same_turn_leaves_at_the_turn_end() -> None:
    real = RecordingTransport()
    transport = OneWriteTransport(real, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    await turns()
    assert real.sends == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"body")
    assert real.sends[1:] == [b"HTTP/1.1 200 OK\r\n\r\nbody"]


async def test_a_large_write_is_not_held_and_order_is_kept() -> None:
    real = RecordingTransport()
    transport = OneWriteTransport(real, asyncio.get_running_loop())
    large = b"x" * (HELD_AT_MOST + 1)
    transport.write(large)
    assert real.sends == [large]
    transport.write(b"small")
    transport.writelines([b"a", b"b"])
    assert real.sends == [large, b"small", b"ab"]


async def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    real = RecordingTransport()
    transport = OneWriteTransport(real, asyncio.get_running_loop())
    transport.write(b"last words")
    transport.close()
    assert real.sends == [b"last words"] and real.closed
    other = RecordingTransport()
    aborted = OneWriteTransport(other, asyncio.get_running_loop())
    aborted.write(b"never sent")
    aborted.abort()
    await turns()
    assert other.sends == [] and other.aborted


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _app(scope: dict[str, object], receive: object, send: object) -> None:
    if scope["type"] == "lifespan":
        message = await receive()  # type: ignore[operator]
        await send({"type": "lifespan.startup.complete"})  # type: ignore[operator]
        await receive()  # type: ignore[operator]
        await send({"type": "lifespan.shutdown.complete"})  # type: ignore[operator]
        assert message["type"] == "lifespan.startup"
        return
    body = b""
    while True:
        message = await receive()  # type: ignore[operator]
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    head = [(b"content-type", b"text/plain")]
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": head})  # type: ignore[operator]
        for part in (b"one ", b"two ", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})  # type: ignore[operator]
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]
        return
    answer = b"echo " + body
    head.append((b"content-length", str(len(answer)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": head})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": answer})  # type: ignore[operator]


@pytest.mark.skipif(UVICORN_OPTIONS["http"] == "auto", reason="httptools is not installed")
async def test_uvicorn_with_the_api_options_answers_plain_streamed_and_kept_alive() -> None:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(_app, host="127.0.0.1", port=port, **UVICORN_OPTIONS))
    serving = asyncio.ensure_future(server.serve())
    try:
        for _ in range(1000):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.config.http_protocol_class is OneWriteHttpToolsProtocol
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for n in range(3):  # one kept-alive connection, several requests
                answer = await client.post("/", content=b"x" * n * 3000)
                assert answer.status_code == 200
                assert answer.content == b"echo " + b"x" * n * 3000
            streamed = await client.get("/stream")
            assert streamed.content == b"one two three"
            expecting = await client.post("/", content=b"hi", headers={"expect": "100-continue"})
            assert expecting.content == b"echo hi"
    finally:
        server.should_exit = True
        await serving
