"""The replier's keep-alive HTTP transport against a scripted local server: connections are
reused, answers of every framing are read whole, and each failure is the httpx error whose
send fate says whether the request may have left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from app.devtools.ports import free_port
from app.platform.http_transport import KeepAliveTransport
from consumers.whatsapp.graph_client import SendFate, send_fate

Answer = Callable[[bytes], bytes | None]  # request bytes -> answer (None: close, say nothing)


def ok(body: bytes = b'{"ok":true}') -> Answer:
    return lambda _request: (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class ScriptedServer:
    """Reads one request at a time (headers + Content-Length body) and answers it."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = self.answer(request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def client_of(serve: Serve, timeout: httpx.Timeout | float = 2.0,
                    **transport_options: float) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A local server running ``serve`` per connection, and a client through the transport."""
    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = httpx.AsyncClient(transport=KeepAliveTransport(**transport_options),  # type: ignore[arg-type]
                               timeout=timeout)
    try:
        yield client, f"http://127.0.0.1:{port}/v1/messages?x=1"
    finally:
        await client.aclose()
        listener.close()


@asynccontextmanager
async def scripted(answer: Answer, **transport_options: float
                   ) -> AsyncIterator[tuple[ScriptedServer, httpx.AsyncClient, str]]:
    server = ScriptedServer(answer)
    async with client_of(server.serve, **transport_options) as (client, url):
        yield server, client, url


async def test_sequential_requests_share_one_connection_and_send_the_whole_request() -> None:
    async with scripted(ok()) as (server, client, url):
        for number in range(3):
            response = await client.post(url, json={"n": number},
                                         headers={"Authorization": "Bearer t"})
            assert response.status_code == 200
            assert response.json() == {"ok": True}
    assert server.connections == 1
    assert server.requests[2].startswith(b"POST /v1/messages?x=1 HTTP/1.1\r\n")
    assert b"Authorization: Bearer t\r\n" in server.requests[2]
    assert server.requests[2].endswith(b'{"n":2}')


async def test_a_chunked_answer_is_read_whole() -> None:
    chunked = (b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n")
    async with scripted(lambda _r: chunked) as (_server, client, url):
        response = await client.post(url, json={})
    assert response.status_code == 400
    assert response.json() == {"a": 1}


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    closing = (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
    async with scripted(lambda _r: closing) as (server, client, url):
        assert (await client.post(url, json={})).status_code == 200
        await asyncio.sleep(0.05)
        assert (await client.post(url, json={})).status_code == 200
    assert server.connections == 2


async def test_a_connection_idle_past_its_expiry_is_replaced() -> None:
    async with scripted(ok(), keepalive_expiry_s=0.05) as (server, client, url):
        await client.post(url, json={})
        await asyncio.sleep(0.1)
        await client.post(url, json={})
    assert server.connections == 2


async def test_a_refused_connection_is_a_connect_error_that_was_never_sent() -> None:
    client = httpx.AsyncClient(transport=KeepAliveTransport(), timeout=2.0)
    try:
        with pytest.raises(httpx.ConnectError) as raised:
            await client.post(f"http://127.0.0.1:{free_port()}/", json={})
    finally:
        await client.aclose()
    assert send_fate(raised.value) is SendFate.NOT_SENT


async def test_a_server_that_hangs_up_without_answering_leaves_the_send_in_doubt() -> None:
    async with scripted(lambda _r: None) as (_server, client, url):
        with pytest.raises(httpx.RemoteProtocolError) as raised:
            await client.post(url, json={})
    assert send_fate(raised.value) is SendFate.IN_DOUBT


async def test_an_answer_that_never_comes_is_a_read_timeout_in_doubt() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await asyncio.sleep(5)
        writer.close()

    async with client_of(never_answer, timeout=0.2) as (client, url):
        with pytest.raises(httpx.ReadTimeout) as raised:
            await client.post(url, json={})
    assert send_fate(raised.value) is SendFate.IN_DOUBT


async def test_waiting_longer_than_the_pool_timeout_for_a_connection_was_never_sent() -> None:
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await release.wait()
        writer.write(ok()(b"") or b"")
        await writer.drain()
        writer.close()

    async with client_of(slow, httpx.Timeout(2.0, pool=0.1), max_connections=1) as (client,
                                                                                      url):
        first = asyncio.create_task(client.post(url, json={}))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout) as raised:
            await client.post(url, json={})
        release.set()
        assert (await first).status_code == 200
    assert send_fate(raised.value) is SendFate.NOT_SENT
