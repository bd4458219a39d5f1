"""The LLM's HTTP client builds the very request httpx's own ``build_request`` builds, to the
URL the SDK joins."""

from __future__ import annotations

import groq
import httpx
import pytest

from app.platform.http_transport import CookielessAsyncClient
from consumers.llm.chat_client import COMPLETIONS_PATH, DEFAULT_BASE_URL, ChatClient
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
def test_the_url_prepared_once_is_the_sdks_join(base_url: str | None) -> None:
    chat = ChatClient(load_llm_config(), "key", base_url)
    assert chat._client is not None
    sdk = groq.AsyncGroq(api_key="key", base_url=base_url or DEFAULT_BASE_URL)
    for path in (COMPLETIONS_PATH, COMPLETIONS_PATH, "/openai/v1/models?x=1", "https://other/x"):
        assert chat._client._prepare_url(path) == sdk._prepare_url(path)
