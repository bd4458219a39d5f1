"""Chat completions through the official ``groq`` SDK, with the fallback rule built in.

The request goes through the SDK's client (its base URL, key, timeout, error types), with its
``post`` and our own plain body rather than ``chat.completions.create``: ``create`` walks the
parameters against their TypedDicts and builds pydantic models of the answer, which cost ~0.7
ms of CPU per call here, more than the rest of the call. The body is encoded and the answer
read with msgspec. The HTTP transport can be shared with the Graph client
(``app/platform/http_transport.py``). The SDK's per-call URL parsing and httpx's header
merges are spared (``PreparedUrlsGroq``, ``direct_requests``; docs/decisions/0020).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import groq
import httpx
import msgspec

from app.platform.metrics import LLM_FALLBACKS, LLM_SECONDS
from consumers.llm.direct_requests import DirectRequestsClient
from consumers.llm.llm_config import LlmConfig

log = logging.getLogger("mecove.llm")

# Passed explicitly: the SDK would otherwise read GROQ_BASE_URL itself, even when empty.
DEFAULT_BASE_URL = "https://api.groq.com"
COMPLETIONS_PATH = "/openai/v1/chat/completions"


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message


class _ChatCompletion(msgspec.Struct):
    """The part of an OpenAI-style chat completion the replier reads."""

    choices: list[_Choice] = []


_read_completion = msgspec.json.Decoder(_ChatCompletion).decode
# The body goes to the SDK as bytes (``content``): sent as they are, where a dict would go
# through its own ``json.dumps`` (the stdlib's pure-Python encoder for its custom default).
_encode_body = msgspec.json.Encoder().encode


class PreparedUrlsGroq(groq.AsyncGroq):
    """The SDK's async client, joining each path to the base URL once: the SDK parses the path,
    then the joined URL, on every call (~0.1 ms of CPU here); an ``httpx.URL`` is immutable."""

    _prepared: dict[str, httpx.URL] | None = None

    def _prepare_url(self, url: str) -> httpx.URL:
        if self._prepared is None:
            self._prepared = {}
        prepared = self._prepared.get(url)
        if prepared is None:
            prepared = self._prepared[url] = super()._prepare_url(url)
        return prepared


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str | None  # None when the fallback was used
    fallback_used: bool
    error: str | None
    latency_ms: float


class ChatClient:
    """One AsyncGroq client per process. No key → every call falls back.

    ``transport``: the HTTP transport to send through (e.g. one shared with the Graph client);
    None for httpx's own.
    """

    def __init__(self, config: LlmConfig, api_key: str | None, base_url: str | None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._client: PreparedUrlsGroq | None = None
        if api_key:
            self._client = PreparedUrlsGroq(
                api_key=api_key,
                base_url=base_url or DEFAULT_BASE_URL,
                timeout=config.timeout_seconds,
                max_retries=0,  # the consumer runtime owns retries; the LLM gets one try
                http_client=DirectRequestsClient(transport=transport, follow_redirects=True)
                if transport is not None else None,
            )
        else:
            log.warning("GROQ_API_KEY is not set: every reply is the fallback text")

    async def complete(
        self, system_prompt: str, user_content: str, fallback: str, purpose: str = "reply"
    ) -> Completion:
        """The model's answer, or ``fallback`` on no key, an error, a timeout or empty content."""
        completion = await self._complete(system_prompt, user_content, fallback)
        if completion.latency_ms:
            LLM_SECONDS.labels(purpose).observe(completion.latency_ms / 1000)
        if completion.fallback_used:
            LLM_FALLBACKS.labels(purpose).inc()
        return completion

    async def _complete(self, system_prompt: str, user_content: str, fallback: str) -> Completion:
        started = time.perf_counter()
        if self._client is None:
            return Completion(fallback, None, True, "no GROQ_API_KEY", 0.0)
        try:
            response = await self._client.post(COMPLETIONS_PATH, cast_to=httpx.Response,
                                               content=_encode_body({
                "model": self.config.model,
                "temperature": self.config.temperature,
                "max_tokens": self.config.max_tokens,
                "messages": [
                    {"role": "system", "content": system_prompt},
                    {"role": "user", "content": user_content},
                ],
            }))
            completion = _read_completion(response.content)
            content = (completion.choices[0].message.content or "").strip() \
                if completion.choices else ""
        except (groq.APIError, msgspec.DecodeError, ValueError, TypeError) as exc:
            elapsed = (time.perf_counter() - started) * 1000
            log.warning("LLM call failed, using the fallback",
                        extra={"fields": {"error": type(exc).__name__}})
            return Completion(fallback, None, True, f"{type(exc).__name__}: {exc}"[:300], elapsed)
        elapsed = (time.perf_counter() - started) * 1000
        if not content:
            return Completion(fallback, None, True, "empty content", elapsed)
        return Completion(content, self.config.model, False, None, elapsed)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
