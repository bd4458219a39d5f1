"""The fake Graph and Groq servers and the simulated Graph API, proven with the real clients
(httpx, the groq SDK) over real sockets."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import groq
import httpx
import pytest

from app.devtools.simulated_graph_api import ReceivedSend, SimulatedGraphApi
from tests.fakes.graph_api import FakeGraphApi
from tests.fakes.groq_api import DEFAULT_REPLY, FakeGroqApi
from tests.fakes.http_fake import Scripted
from tests.processes import ROOT

TOKEN = "test-token"
PHONE_ID = "106540352242922"
TO = "+919130099484"
MODEL = "llama-3.1-8b-instant"


def text_message(body: str = "hi", reply_to: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "text",
        "text": {"body": body},
    }
    if reply_to is not None:
        message["context"] = {"message_id": reply_to}
    return message


@pytest.fixture
def graph() -> Iterator[FakeGraphApi]:
    with FakeGraphApi() as fake:
        yield fake


@pytest.fixture
def graph_client(graph: FakeGraphApi) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=graph.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ) as client:
        yield client


def post_message(client: httpx.Client, message: dict[str, Any]) -> httpx.Response:
    return client.post(f"/v21.0/{PHONE_ID}/messages", json=message)


@pytest.fixture
def groq_fake() -> Iterator[FakeGroqApi]:
    with FakeGroqApi() as fake:
        yield fake


def chat(fake: FakeGroqApi, **kwargs: Any) -> groq.AsyncGroq:
    return groq.AsyncGroq(api_key="test-key", base_url=fake.base_url, **kwargs)


async def complete(client: groq.AsyncGroq) -> Any:
    return await client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello"},
        ],
        temperature=0.3,
        max_tokens=64,
    )


# ---------------------------------------------------------------- Graph API fake


def test_graph_success_has_meta_shape_and_is_recorded(
    graph: FakeGraphApi, graph_client: httpx.Client
) -> None:
    message = text_message("hi", reply_to="wamid.X")
    response = post_message(graph_client, message)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    data = response.json()
    assert data["messaging_product"] == "whatsapp"
    assert data["contacts"] == [{"input": TO, "wa_id": "919130099484"}]
    [sent_id] = [m["id"] for m in data["messages"]]
    assert sent_id.startswith("wamid.")

    assert graph.sent() == [message]
    [record] = graph.requests()
    assert (record.method, record.path, record.status) == (
        "POST",
        f"/v21.0/{PHONE_ID}/messages",
        200,
    )
    assert record.headers["authorization"] == f"Bearer {TOKEN}"
    assert record.response == data
    assert record.received_at <= time.time()

    second = post_message(graph_client, text_message("again")).json()
    assert second["messages"][0]["id"] != sent_id
    assert graph.sent_texts() == ["hi", "again"]


def test_graph_scripted_429_then_200(graph: FakeGraphApi, graph_client: httpx.Client) -> None:
    graph.script([429, 200])

    limited = post_message(graph_client, text_message())
    assert limited.status_code == 429
    error = limited.json()["error"]
    assert error["code"] == 130429
    assert error["type"] == "OAuthException"
    assert graph.sent() == []

    assert post_message(graph_client, text_message()).status_code == 200
    assert graph.pending_script() == 0
    assert [r.status for r in graph.requests()] == [429, 200]
    assert len(graph.sent()) == 1


def test_graph_error_131047_body(graph: FakeGraphApi, graph_client: httpx.Client) -> None:
    graph.script([("error", 400, 131047)])

    response = post_message(graph_client, text_message())

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 131047
    assert error["type"] == "OAuthException"
    assert "Re-engagement" in error["message"]
    assert "24 hours" in error["error_data"]["details"]
    assert error["fbtrace_id"]
    assert graph.sent() == []
    # the script is spent: normal service resumes
    assert post_message(graph_client, text_message()).status_code == 200


def test_graph_fail_always_until_clear(graph: FakeGraphApi, graph_client: httpx.Client) -> None:
    graph.fail_always(500)
    for _ in range(2):
        response = post_message(graph_client, text_message())
        assert response.status_code == 500
        assert response.json()["error"]["code"] == 1

    graph.fail_always(503, 2)
    assert post_message(graph_client, text_message()).json()["error"]["code"] == 2

    graph.clear()
    assert post_message(graph_client, text_message()).status_code == 200
    assert len(graph.sent()) == 1


def test_graph_expected_token_answers_401_code_190(graph: FakeGraphApi) -> None:
    graph.expected_token = TOKEN
    graph.script([200])
    with httpx.Client(base_url=graph.base_url) as client:
        bad = client.post(
            f"/v21.0/{PHONE_ID}/messages",
            json=text_message(),
            headers={"Authorization": "Bearer expired"},
        )
        assert bad.status_code == 401
        error = bad.json()["error"]
        assert (error["code"], error["error_subcode"]) == (190, 463)
        assert graph.pending_script() == 1  # auth failures do not consume the script

        good = client.post(
            f"/v21.0/{PHONE_ID}/messages",
            json=text_message(),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert good.status_code == 200


def test_graph_rejects_invalid_requests(graph: FakeGraphApi, graph_client: httpx.Client) -> None:
    assert post_message(graph_client, {"to": TO}).json()["error"]["code"] == 100
    no_text = {"messaging_product": "whatsapp", "to": TO, "type": "text"}
    assert post_message(graph_client, no_text).status_code == 400
    assert graph_client.post("/v21.0/nope", json=text_message()).status_code == 400
    assert graph.sent() == []


def test_graph_latency_switch(graph: FakeGraphApi, graph_client: httpx.Client) -> None:
    graph.latency_s = 0.4
    started = time.monotonic()
    assert post_message(graph_client, text_message()).status_code == 200
    slow = time.monotonic() - started
    assert 0.35 <= slow < 3

    graph.latency_s = 0
    started = time.monotonic()
    post_message(graph_client, text_message())
    assert time.monotonic() - started < 0.3

    graph.script([Scripted(latency_s=0.3)])  # per-response latency
    started = time.monotonic()
    post_message(graph_client, text_message())
    assert time.monotonic() - started >= 0.25


def test_graph_timeout_leaves_send_unconfirmed_until_answered(
    graph: FakeGraphApi, graph_client: httpx.Client
) -> None:
    graph.latency_s = 1.0
    with pytest.raises(httpx.ReadTimeout):
        graph_client.post(f"/v21.0/{PHONE_ID}/messages", json=text_message(), timeout=0.2)
    assert graph.sent() == []
    # the server still answers 200 after its latency: the message "went out" anyway
    assert len(graph.wait_for_sends(1, timeout=5)) == 1


def test_graph_malformed_json(graph: FakeGraphApi, graph_client: httpx.Client) -> None:
    graph.malformed_json = True
    response = post_message(graph_client, text_message())
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert len(graph.sent()) == 1  # answered 200: counts as sent, the reply was unreadable

    graph.malformed_json = False
    graph.script(["malformed", "ok"])
    with pytest.raises(json.JSONDecodeError):
        post_message(graph_client, text_message()).json()
    assert post_message(graph_client, text_message()).json()["messages"]


def test_graph_drop_closes_connection(graph: FakeGraphApi, graph_client: httpx.Client) -> None:
    graph.script(["drop"])
    with pytest.raises(httpx.RemoteProtocolError):
        post_message(graph_client, text_message())
    assert graph.sent() == []
    assert graph.requests()[0].status is None


def test_graph_wait_for_sends(graph: FakeGraphApi) -> None:
    def send_later() -> None:
        time.sleep(0.2)
        with httpx.Client(base_url=graph.base_url) as client:
            post_message(client, text_message("late"))

    sender = threading.Thread(target=send_later)
    sender.start()
    try:
        assert graph.wait_for_sends(1, timeout=5)[0]["text"]["body"] == "late"
    finally:
        sender.join()

    started = time.monotonic()
    with pytest.raises(TimeoutError, match="2 confirmed send"):
        graph.wait_for_sends(2, timeout=0.3)
    assert time.monotonic() - started < 2


async def test_graph_with_async_httpx(graph: FakeGraphApi) -> None:
    graph.script([("error", 401, 190), ("error", 429, 130429), 200])
    async with httpx.AsyncClient(base_url=graph.base_url) as client:
        codes = []
        for _ in range(3):
            response = await client.post(f"/v21.0/{PHONE_ID}/messages", json=text_message())
            codes.append(response.status_code)
    assert codes == [401, 429, 200]
    assert len(graph.sent()) == 1


def test_graph_stop_refuses_connections() -> None:
    fake = FakeGraphApi().start()
    url = fake.base_url
    fake.stop()
    fake.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{url}/v21.0/{PHONE_ID}/messages", json=text_message())
    with pytest.raises(RuntimeError):
        _ = fake.base_url


def test_sequential_answers_do_not_wait_for_a_delayed_ack(
    graph: FakeGraphApi, graph_client: httpx.Client
) -> None:
    post_message(graph_client, text_message())  # the connection is open from here on
    started = time.monotonic()
    for _ in range(20):
        post_message(graph_client, text_message())
    # with Nagle's algorithm on, each answer's body waits ~40 ms for the client's ACK
    assert time.monotonic() - started < 0.4


# ---------------------------------------------------------------- simulated Graph API


def test_simulated_graph_api_hands_each_text_send_to_its_callback() -> None:
    sends: list[ReceivedSend] = []
    with SimulatedGraphApi(sends.append, clock=lambda: 42.0) as api, \
            httpx.Client(base_url=api.base_url) as client:
        accepted = client.post(f"/v21.0/{PHONE_ID}/messages",
                               json=text_message("hello", reply_to="wamid.IN"))
        image = {"messaging_product": "whatsapp", "to": TO, "type": "image"}
        refused = client.post(f"/v21.0/{PHONE_ID}/messages", json=image)
        wrong_path = client.post("/v21.0/nope", json=text_message())

    assert accepted.status_code == 200
    [send] = sends
    assert accepted.json()["messages"] == [{"id": send.outbound_id}]
    assert (send.phone_number_id, send.to, send.text, send.context_message_id,
            send.received_at) == (PHONE_ID, TO, "hello", "wamid.IN", 42.0)
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, 100)
    assert (wrong_path.status_code, wrong_path.json()["error"]["code"]) == (400, 2500)


def test_simulated_graph_api_hands_on_a_send_to_a_bsuid_as_its_recipient() -> None:
    sends: list[ReceivedSend] = []
    by_bsuid = {"messaging_product": "whatsapp", "recipient": "US.13491208655302741918",
                "type": "text", "text": {"body": "hello"}}
    with SimulatedGraphApi(sends.append) as api, httpx.Client(base_url=api.base_url) as client:
        accepted = client.post(f"/v21.0/{PHONE_ID}/messages", json=by_bsuid)
    assert accepted.status_code == 200
    [send] = sends
    assert (send.to, send.recipient, send.text) == (None, "US.13491208655302741918", "hello")


def test_simulated_graph_api_answers_a_typing_indicator_without_counting_it_as_a_send() -> None:
    sends: list[ReceivedSend] = []
    typing = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN1",
              "typing_indicator": {"type": "text"}}
    with SimulatedGraphApi(sends.append) as api, httpx.Client(base_url=api.base_url) as client:
        answered = client.post(f"/v21.0/{PHONE_ID}/messages", json=typing)
        refused = client.post(f"/v21.0/{PHONE_ID}/messages",
                              json={"messaging_product": "whatsapp", "status": "read"})
    assert (answered.status_code, answered.json()) == (200, {"success": True})
    assert refused.status_code == 400
    assert sends == []


# ---------------------------------------------------------------- Groq fake


async def test_groq_sdk_gets_reply_and_request_is_recorded(groq_fake: FakeGroqApi) -> None:
    client = chat(groq_fake, max_retries=0)
    try:
        completion = await complete(client)
    finally:
        await client.close()

    assert completion.choices[0].message.content == DEFAULT_REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == MODEL
    assert completion.id.startswith("chatcmpl-")
    assert completion.usage is not None and completion.usage.total_tokens == 2

    [request] = groq_fake.requests()
    assert request["model"] == MODEL
    assert request["messages"][1] == {"role": "user", "content": "hello"}
    assert (request["temperature"], request["max_tokens"]) == (0.3, 64)
    [record] = groq_fake.recorded()
    assert record.path == "/openai/v1/chat/completions"
    assert record.headers["authorization"] == "Bearer test-key"


async def test_groq_reply_text_responder_and_empty_content(groq_fake: FakeGroqApi) -> None:
    client = chat(groq_fake, max_retries=0)
    try:
        groq_fake.reply_text = "Namaste"
        assert (await complete(client)).choices[0].message.content == "Namaste"

        groq_fake.responder = lambda body: f"echo: {body['messages'][-1]['content']}"
        assert (await complete(client)).choices[0].message.content == "echo: hello"

        groq_fake.empty_content = True
        assert (await complete(client)).choices[0].message.content == ""

        groq_fake.clear()
        assert (await complete(client)).choices[0].message.content == DEFAULT_REPLY
    finally:
        await client.close()


async def test_groq_scripted_errors_raise_sdk_errors(groq_fake: FakeGroqApi) -> None:
    groq_fake.script([500, 429, ("error", 400, "context_length_exceeded"), 200])
    client = chat(groq_fake, max_retries=0)
    try:
        with pytest.raises(groq.InternalServerError) as server_error:
            await complete(client)
        assert server_error.value.status_code == 500
        assert server_error.value.body == {  # the SDK keeps the whole JSON body
            "error": {
                "message": "Internal Server Error",
                "type": "internal_server_error",
                "code": "internal_server_error",
            }
        }

        with pytest.raises(groq.RateLimitError):
            await complete(client)
        with pytest.raises(groq.BadRequestError, match="context_length_exceeded"):
            await complete(client)
        assert (await complete(client)).choices[0].message.content == DEFAULT_REPLY
    finally:
        await client.close()
    assert len(groq_fake.requests()) == 4


async def test_groq_fail_always_and_clear(groq_fake: FakeGroqApi) -> None:
    groq_fake.fail_always(503)
    client = chat(groq_fake, max_retries=0)
    try:
        for _ in range(2):
            with pytest.raises(groq.APIStatusError) as failure:
                await complete(client)
            assert failure.value.status_code == 503
        groq_fake.clear()
        assert (await complete(client)).choices[0].message.content == DEFAULT_REPLY
    finally:
        await client.close()


async def test_groq_malformed_json_raises(groq_fake: FakeGroqApi) -> None:
    groq_fake.malformed_json = True
    client = chat(groq_fake, max_retries=0)
    try:
        # the SDK lets the decoder's error through (json.JSONDecodeError is a ValueError)
        with pytest.raises((ValueError, groq.APIError)):
            await complete(client)
    finally:
        await client.close()


async def test_groq_sdk_default_retries_consume_the_script(groq_fake: FakeGroqApi) -> None:
    # why a test wants max_retries=0: the SDK's own retry hides a scripted 500
    groq_fake.script([{"status": 500, "retry_after": 0.01}, 200])
    client = chat(groq_fake)  # default max_retries=2
    try:
        assert (await complete(client)).choices[0].message.content == DEFAULT_REPLY
    finally:
        await client.close()
    assert [r.status for r in groq_fake.recorded()] == [500, 200]


async def test_groq_latency_and_api_key(groq_fake: FakeGroqApi) -> None:
    groq_fake.expected_api_key = "right"
    client = chat(groq_fake, max_retries=0)
    try:
        with pytest.raises(groq.AuthenticationError):
            await complete(client)
    finally:
        await client.close()

    groq_fake.latency_s = 0.3
    client = groq.AsyncGroq(api_key="right", base_url=groq_fake.base_url, max_retries=0)
    try:
        started = time.monotonic()
        await complete(client)
        assert 0.25 <= time.monotonic() - started < 3
    finally:
        await client.close()


# ---------------------------------------------------------------- standalone mode


def start_standalone(module: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 15)
        assert ready, f"{module} printed nothing within 15s"
        line = process.stdout.readline().strip()
        assert line.startswith("listening http://127.0.0.1:"), line
    except BaseException:
        process.kill()
        process.communicate()
        raise
    return process, line.removeprefix("listening ")


def stop_standalone(process: subprocess.Popen[str]) -> None:
    """SIGTERM, expect a clean exit 0; ``communicate`` also closes the pipes."""
    process.terminate()
    try:
        _, stderr = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    assert process.returncode == 0, stderr


@pytest.mark.slow
def test_graph_standalone_subprocess() -> None:
    process, base_url = start_standalone("tests.fakes.graph_api")
    try:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            assert post_message(client, text_message("one")).status_code == 200

            scripted = client.post("/_fake/script", json=[["error", 400, 131047], 429])
            assert scripted.json() == {"ok": True, "pending": 2}
            assert post_message(client, text_message("two")).json()["error"]["code"] == 131047
            assert post_message(client, text_message("three")).status_code == 429

            sent = client.get("/_fake/sent", params={"wait_for": 1, "timeout": 2}).json()
            assert [body["text"]["body"] for body in sent] == ["one"]
            statuses = [r["status"] for r in client.get("/_fake/requests").json()]
            assert statuses == [200, 400, 429]
    finally:
        stop_standalone(process)


@pytest.mark.slow
def test_groq_standalone_subprocess() -> None:
    process, base_url = start_standalone("tests.fakes.groq_api")
    try:
        with httpx.Client(base_url=base_url, timeout=10) as control:
            control.post("/_fake/config", json={"reply_text": "from subprocess"})
            with groq.Groq(api_key="k", base_url=base_url, max_retries=0) as client:
                completion = client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hi"}]
                )
                assert completion.choices[0].message.content == "from subprocess"
                control.post("/_fake/script", json=[500])
                with pytest.raises(groq.InternalServerError):
                    client.chat.completions.create(
                        model=MODEL, messages=[{"role": "user", "content": "hi"}]
                    )
            bodies = control.get("/_fake/requests").json()
            assert [b["model"] for b in bodies] == [MODEL, MODEL]
    finally:
        stop_standalone(process)
