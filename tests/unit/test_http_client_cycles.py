"""An answer the replier's HTTP client has read is freed by reference counting: httpx binds
its stream to it (a cycle), which left each LLM call's objects to the cycle collector
(decision 0034)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import httpx
import pytest

from app.platform.http_transport import CookielessAsyncClient


def _answer(request: httpx.Request) -> httpx.Response:
    """An answer whose body comes as a stream, as from a network transport."""
    return httpx.Response(200, stream=httpx.ByteStream(b'{"ok":true}'),
                          headers={"X-Seen": request.url.path})


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_a_read_answer_is_freed_without_the_collector(no_collector: None) -> None:
    async with CookielessAsyncClient(transport=httpx.MockTransport(_answer)) as client:
        response = await client.post("http://api.test/x", content=b"{}")
        assert response.json() == {"ok": True}
        assert response.headers["X-Seen"] == "/x"
        assert response.elapsed.total_seconds() >= 0
        freed = weakref.ref(response)
        request = weakref.ref(response.request)
        del response
        assert freed() is None
        assert request() is None


async def test_a_read_answer_still_reads_as_before() -> None:
    async with CookielessAsyncClient(transport=httpx.MockTransport(_answer)) as client:
        response = await client.post("http://api.test/x", content=b"{}")
        assert await response.aread() == b'{"ok":true}'
        with pytest.raises(httpx.StreamConsumed):
            async for _chunk in response.aiter_raw():
                pass
        await response.aclose()


async def test_a_streamed_answer_keeps_its_stream() -> None:
    async with CookielessAsyncClient(transport=httpx.MockTransport(_answer)) as client:
        request = client.build_request("GET", "http://api.test/s")
        response = await client.send(request, stream=True)
        assert not response.is_closed
        assert await response.aread() == b'{"ok":true}'
        await response.aclose()
        assert response.elapsed.total_seconds() >= 0
