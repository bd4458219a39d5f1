"""The Graph client, both ways it sends: through the shared transport directly (how the
replier runs) and through an httpx client (no transport given: a proxy in the environment)."""

from __future__ import annotations

import httpx
import pytest

from app.platform.http_transport import KeepAliveTransport
from consumers.whatsapp.graph_client import (
    GraphClient,
    GraphPairLimited,
    GraphSendInDoubt,
)
from tests.fakes.graph_api import FakeGraphApi
from tests.integration.consumer_helpers import GRAPH_TOKEN


def _client(graph: FakeGraphApi, transport: httpx.AsyncBaseTransport | None) -> GraphClient:
    return GraphClient(base_url=graph.base_url, version="v23.0", phone_number_id="1122334455",
                       token=GRAPH_TOKEN, timeout_s=0.3, typing_timeout_s=0.3,
                       transport=transport)


@pytest.mark.parametrize("direct", [True, False], ids=["shared transport", "httpx client"])
async def test_sends_reads_the_id_shows_typing_and_types_the_failures(
    graph: FakeGraphApi, direct: bool,
) -> None:
    client = _client(graph, KeepAliveTransport() if direct else None)
    try:
        outbound = await client.send_text("+15550001111", "hello", "wamid.in1")
        await client.show_typing("wamid.in1")
        graph.script([graph.error(code=131056)])
        with pytest.raises(GraphPairLimited):
            await client.send_text("+15550001111", "again", None)
        graph.answer_late(1.0)
        with pytest.raises(GraphSendInDoubt):  # the request went out; the answer never came
            await client.send_text("+15550001111", "late", None)
    finally:
        await client.close()
    assert outbound is not None and outbound.startswith("wamid.")
    [sent, *_] = graph.sent()
    assert sent["to"] == "+15550001111" and sent["context"] == {"message_id": "wamid.in1"}
    assert graph.read_marks()[0]["message_id"] == "wamid.in1"
    assert all(r.headers["authorization"] == f"Bearer {GRAPH_TOKEN}" for r in graph.recorded())
