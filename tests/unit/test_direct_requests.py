"""The LLM's HTTP client builds the very request httpx's own ``build_request`` builds."""

from __future__ import annotations

import httpx
import pytest

from app.platform.http_transport import CookielessAsyncClient
from consumers.llm.chat_client import COMPLETIONS_PATH, ChatClient
from consumers.llm.direct_requests import DirectRequestsClient
from consumers.llm.llm_config import load_llm_config

SDK_HEADERS = httpx.Headers({"Accept": "application/json", "Content-Type": "application/json",
                             "User-Agent": "Groq/Python", "Authorization": "Bearer k"})
URL = httpx.URL("http://127.0.0.1:9/openai/v1/chat/completions")


def _built(client: httpx.AsyncClient, **options: object) -> tuple[object, ...]:
    request = client.build_request("post", **options)  # type: ignore[arg-type]
    return (request.method, str(request.url), request.headers.raw, request.extensions,
            request.read())


@pytest.mark.parametrize("options", [
    {"url": URL, "content": b'{"a":1}', "headers": SDK_HEADERS, "timeout": 12.0, "files": None},
    {"url": URL, "content": b"{}", "headers": SDK_HEADERS},  # the client's timeout
    {"url": URL, "content": b"{}", "headers": httpx.Headers({"Accept-Encoding": "identity"})},
    {"url": URL, "content": b"{}", "headers": SDK_HEADERS, "params": {"q": "1"}},  # httpx's own
    {"url": "/relative", "content": b"{}", "headers": SDK_HEADERS},  # httpx's own
])
def test_same_request_as_httpx(options: dict[str, object]) -> None:
    base = {"base_url": "http://127.0.0.1:9"} if options["url"] == "/relative" else {}
    direct = DirectRequestsClient(follow_redirects=True, timeout=7.0, **base)
    plain = CookielessAsyncClient(follow_redirects=True, timeout=7.0, **base)
    assert _built(direct, **options) == _built(plain, **options)


@pytest.mark.parametrize("base_url", [None, "http://127.0.0.1:9", "http://127.0.0.1:9/",
                                      "https://proxy.example/groq/"])
def test_absolute_url_is_the_sdks_join(base_url: str | None) -> None:
    chat = ChatClient(load_llm_config(), "key", base_url)
    assert chat._client is not None
    assert str(chat._client._prepare_url(COMPLETIONS_PATH)) == chat._url
