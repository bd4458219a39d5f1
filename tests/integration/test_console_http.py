"""The console over HTTP: sign-in, sessions, CSRF, pagination, escaping, dead-letter actions."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from app.console.session import SessionSigner
from app.devtools.webhook_bodies import delivery, encode, signed_headers, text_message
from app.platform.clock import now_ms
from app.platform.eventlog.keys import Keys
from app.platform.settings import Settings
from tests.console_data import (
    CONSOLE_TOKEN,
    console_settings,
    dead_letter,
    fail_reply,
    project,
    receive,
    receive_from_username,
    reply,
    report_status,
    summarize,
)
from tests.service import ingress


@pytest.fixture
def on(settings: Settings) -> Settings:
    return console_settings(settings)


@pytest.fixture
async def client(on: Settings) -> AsyncIterator[AsyncTestClient]:
    async with ingress(on) as test_client:
        yield test_client


async def signed_in(client: AsyncTestClient) -> str:
    """Sign in through the link; returns the CSRF token of the session."""
    response = await client.get(f"/console?token={CONSOLE_TOKEN}", follow_redirects=False)
    assert response.status_code == 303
    page = await client.get("/console/dead-letters", follow_redirects=False)
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


async def test_without_a_console_token_there_is_no_console(settings: Settings) -> None:
    async with ingress(settings) as client:
        assert (await client.get("/console", follow_redirects=False)).status_code == 404
        assert (await client.get("/console/login")).status_code == 404


async def test_a_visitor_without_a_session_is_sent_to_sign_in(client: AsyncTestClient) -> None:
    for path in ("/console", "/console/conversations", "/console/dead-letters",
                 "/console/overview/live"):
        response = await client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/console/login"
    post = await client.post("/console/dead-letters/1-0/retry", data={"csrf": "x"},
                             follow_redirects=False)
    assert post.status_code == 401


async def test_the_sign_in_link_sets_a_strict_http_only_cookie_and_drops_the_token(
    client: AsyncTestClient,
) -> None:
    response = await client.get(f"/console/conversations?token={CONSOLE_TOKEN}&page=0",
                                follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/conversations?page=0"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Max-Age=28800" in cookie
    assert "samesite=strict" in cookie.lower()
    assert CONSOLE_TOKEN not in cookie
    page = await client.get("/console/conversations", follow_redirects=False)
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in page.text and 'src="/console/static/console.js"' in page.text


async def test_a_wrong_token_is_refused_and_then_throttled(client: AsyncTestClient) -> None:
    statuses = [(await client.get("/console?token=not-the-token-at-all",
                                  follow_redirects=False)).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    # Even the right token waits once the client is throttled.
    throttled = await client.get(f"/console?token={CONSOLE_TOKEN}", follow_redirects=False)
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1


async def test_the_sign_in_form_needs_its_csrf_token_and_the_right_token(
    client: AsyncTestClient,
) -> None:
    form = await client.get("/console/login")
    assert form.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    without = await client.post("/console/login", data={"token": CONSOLE_TOKEN},
                                follow_redirects=False)
    assert without.status_code == 403
    wrong = await client.post("/console/login", data={"token": "nope", "csrf": csrf},
                              follow_redirects=False)
    assert wrong.status_code == 401 and "Wrong token" in wrong.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', wrong.text).group(1)  # type: ignore[union-attr]
    right = await client.post("/console/login", data={"token": CONSOLE_TOKEN, "csrf": csrf},
                              follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "/console"
    assert (await client.get("/console", follow_redirects=False)).status_code == 200


async def test_an_expired_or_forged_session_cookie_is_refused(
    client: AsyncTestClient, on: Settings
) -> None:
    signer = SessionSigner(CONSOLE_TOKEN, on.console_session_seconds)
    expired = signer.issue(expires_ms=now_ms() - 1)
    client.cookies.set("mecove_console", expired, path="/console")
    assert (await client.get("/console", follow_redirects=False)).status_code == 303
    forged = SessionSigner("another-token-0123456789", 3600).issue()
    client.cookies.set("mecove_console", forged, path="/console")
    assert (await client.get("/console", follow_redirects=False)).status_code == 303
    client.cookies.set("mecove_console", signer.issue(), path="/console")
    assert (await client.get("/console", follow_redirects=False)).status_code == 200


async def test_retry_without_csrf_is_forbidden_and_with_it_leaves_the_list(
    client: AsyncTestClient, on: Settings, redis: Redis
) -> None:
    [message] = await receive(redis, on, "15550009001", ["please answer"])
    dlq_id = await dead_letter(redis, on, message)
    csrf = await signed_in(client)
    listed = await client.get("/console/dead-letters")
    assert dlq_id in listed.text and "RetryableError" in listed.text
    details = await client.get(f"/console/dead-letters/{dlq_id}")
    assert details.status_code == 200 and "replier" in details.text
    refused = await client.post(f"/console/dead-letters/{dlq_id}/retry", data={},
                                follow_redirects=False)
    assert refused.status_code == 403
    wrong = await client.post(f"/console/dead-letters/{dlq_id}/retry", data={"csrf": "x" * 64},
                              follow_redirects=False)
    assert wrong.status_code == 403
    done = await client.post(f"/console/dead-letters/{dlq_id}/retry", data={"csrf": csrf},
                             follow_redirects=False)
    assert done.status_code == 303
    after = await client.get(done.headers["location"])
    assert dlq_id not in after.text and "Retried" in after.text
    entries = await redis.xrange(Keys.from_settings(on).stream(0), count=10)
    assert any(f.get(b"only_group") == b"replier" for _, f in entries)


async def test_drop_removes_a_dead_letter(client: AsyncTestClient, on: Settings,
                                          redis: Redis) -> None:
    [message] = await receive(redis, on, "15550009002", ["drop me"])
    dlq_id = await dead_letter(redis, on, message)
    csrf = await signed_in(client)
    done = await client.post(f"/console/dead-letters/{dlq_id}/drop", data={"csrf": csrf})
    assert done.status_code == 200 and "Dropped." in done.text and dlq_id not in done.text


async def test_conversations_are_paginated_fifty_a_page_and_searchable(
    client: AsyncTestClient, on: Settings, redis: Redis
) -> None:
    start = now_ms() - 1_000_000
    for n in range(120):
        await receive(redis, on, f"1555100{n:04d}", [f"hello {n}"], received_ms=start + n * 1000)
    await project(redis, on)
    await signed_in(client)
    first = await client.get("/console/conversations")
    assert first.text.count("/console/conversations/") == 50
    assert "+15551000119" in first.text and "+15551000069" not in first.text  # newest first
    assert 'rel="next"' in first.text
    last = await client.get("/console/conversations?page=2")
    assert last.text.count("/console/conversations/") == 20 and 'rel="next"' not in last.text
    found = await client.get("/console/conversations", params={"q": "15551000042"})
    assert found.text.count("/console/conversations/") == 1 and "+15551000042" in found.text
    assert (await client.get("/console/conversations?page=-1")).status_code == 400


async def test_a_conversation_shows_replies_quoted_marked_and_escaped(
    client: AsyncTestClient, on: Settings, redis: Redis
) -> None:
    start = now_ms() - 100_000
    first, second = await receive(redis, on, "15550007777",
                                  ["<script>alert('x')</script> hi", "where is my order?"],
                                  received_ms=start)
    [third] = await receive(redis, on, "15550007777", ["and a refund"], received_ms=start + 5000)
    await reply(redis, on, first, "Hello!", at_ms=start + 1000)
    await reply(redis, on, second, "It ships <b>today</b>", contextual=True, at_ms=start + 6000)
    await fail_reply(redis, on, third)
    await summarize(redis, on, third, "Asked about an order & a refund")
    await project(redis, on)
    await signed_in(client)
    page = await client.get(f"/console/conversations/{first.user_id}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; hi" in page.text
    assert "It ships &lt;b&gt;today&lt;/b&gt;" in page.text
    quote = re.search(r'<blockquote class="quote"><a href="#m-([^"]+)">([^<]+)</a>', page.text)
    assert quote and quote.group(1) == second.message_id
    assert quote.group(2) == "where is my order?"
    assert page.text.count('class="quote"') == 1  # the first reply was not contextual
    assert "Reply failed: graph api: 131047" in page.text
    assert "Asked about an order &amp; a refund" in page.text
    assert 'class="ticks sent"' in page.text


async def test_replies_show_meta_s_ticks_and_a_failed_one_its_error_code(
    client: AsyncTestClient, on: Settings, redis: Redis
) -> None:
    start = now_ms() - 100_000
    read, undelivered, accepted = await receive(redis, on, "15550004444",
                                                ["one", "two", "three"], received_ms=start)
    read_id = await reply(redis, on, read, "Read it?")
    undelivered_id = await reply(redis, on, undelivered, "Lost")
    await reply(redis, on, accepted, "Only sent")
    for status in ("sent", "read", "delivered"):  # any order: the furthest status wins
        await report_status(redis, on, read_id, status)
    await report_status(redis, on, undelivered_id, "failed", error_code=131047,
                        error_title="Re-engagement message")
    await project(redis, on)
    await signed_in(client)
    page = await client.get(f"/console/conversations/{read.user_id}")
    assert re.search(r'class="ticks read" title="read [^"]+ UTC">✓✓</span>', page.text)
    assert ('class="ticks failed" title="failed: 131047 Re-engagement message">✗</span>'
            in page.text)
    assert page.text.count('class="ticks sent"') == 1  # no status yet: accepted by Meta
    overview = await client.get("/console/overview/live")
    assert "(0 given up, 1 undelivered)" in overview.text


async def test_a_username_user_shows_its_bsuid_and_username_and_is_found_by_bsuid(
    client: AsyncTestClient, on: Settings, redis: Redis
) -> None:
    bsuid = "US.13491208655302741918"
    [message] = await receive_from_username(redis, on, bsuid, ["hi, no phone here"],
                                            username="alice.shop")
    await project(redis, on)
    await signed_in(client)
    listed = await client.get("/console/conversations", params={"q": bsuid})
    assert listed.text.count("/console/conversations/") == 1
    assert f'<span class="kind-label">BSUID</span> {bsuid}</span>' in listed.text
    assert '<span class="username" title="username">@alice.shop</span>' in listed.text
    page = await client.get(f"/console/conversations/{message.user_id}")
    assert f"{bsuid}</span>" in page.text and "@alice.shop" in page.text
    assert "hi, no phone here" in page.text


async def test_fallback_replies_are_marked_and_old_messages_page_back(
    client: AsyncTestClient, on: Settings, redis: Redis
) -> None:
    start = now_ms() - 1_000_000
    messages = []
    for n in range(60):
        messages += await receive(redis, on, "15550008888", [f"message {n:02d}"],
                                  received_ms=start + n * 1000)
    await reply(redis, on, messages[-1], "Noted.", fallback=True)
    await project(redis, on)
    await signed_in(client)
    latest = await client.get(f"/console/conversations/{messages[0].user_id}")
    assert "message 59" in latest.text and "message 09" not in latest.text
    assert 'class="badge fallback"' in latest.text
    older = re.search(r'href="(/console/conversations/[^"]+\?before=[^"]+)"', latest.text)
    assert older
    page = await client.get(older.group(1).replace("&amp;", "&"))
    assert page.status_code == 200
    assert "message 09" in page.text and "message 00" in page.text
    assert "message 10" not in page.text
    assert (await client.get(f"/console/conversations/{messages[0].user_id}?before=junk")
            ).status_code == 400


async def test_the_overview_shows_groups_rates_and_checkpoint(
    client: AsyncTestClient, on: Settings, redis: Redis
) -> None:
    [message] = await receive(redis, on, "15550006666", ["hi"])
    await reply(redis, on, message, "hello")
    await project(redis, on)
    await signed_in(client)
    page = await client.get("/console")
    assert page.status_code == 200
    assert "projector" in page.text and '<polyline class="series-messages"' in page.text
    live = await client.get("/console/overview/live")
    assert live.status_code == 200 and "<html" not in live.text and "projector" in live.text


async def test_the_webhook_still_works_with_the_console_on(on: Settings, redis: Redis) -> None:
    raw = encode(delivery(text_message("15550005555", "hello")))
    async with ingress(on) as client:
        response = await client.post("/webhooks/whatsapp", content=raw,
                                     headers=signed_headers(raw, on.whatsapp_app_secret or ""))
    assert response.status_code == 200
    assert "content-security-policy" not in response.headers  # the console's headers stay home


async def test_a_short_console_token_is_refused_at_start_up() -> None:
    from app.platform.settings import SettingsError, settings_from_env

    with pytest.raises(SettingsError, match="MECOVE_CONSOLE_TOKEN"):
        settings_from_env({"MECOVE_CONSOLE_TOKEN": "short"}, require_urls=False)
