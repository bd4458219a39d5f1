"""Fixtures for consumer tests: the fakes of Graph and Groq, settings pointing at them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import asyncpg
import msgspec
import pytest

from app.platform.database import open_database
from app.platform.settings import Settings
from tests.fakes.graph_api import FakeGraphApi
from tests.fakes.groq_api import FakeGroqApi
from tests.integration.consumer_helpers import GRAPH_TOKEN, GROQ_KEY


@pytest.fixture
def graph() -> Iterator[FakeGraphApi]:
    with FakeGraphApi(expected_token=GRAPH_TOKEN) as fake:
        yield fake


@pytest.fixture
def groq() -> Iterator[FakeGroqApi]:
    with FakeGroqApi(expected_api_key=GROQ_KEY) as fake:
        yield fake


@pytest.fixture
def reply_settings(settings: Settings, graph: FakeGraphApi, groq: FakeGroqApi) -> Settings:
    return msgspec.structs.replace(
        settings,
        whatsapp_phone_number_id="1122334455667",
        whatsapp_permanent_token=GRAPH_TOKEN,
        whatsapp_api_base_url=graph.base_url,
        whatsapp_api_version="v21.0",
        groq_api_key=GROQ_KEY,
        groq_base_url=groq.base_url,
    )


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    opened = await open_database(settings.database_url)
    yield opened
    await opened.close()
