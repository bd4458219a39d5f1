"""The console in a real headless Chromium: sign in, read a chat, retry a dead letter.

Each page is photographed into ``tests/browser/artifacts/`` (kept by CI, ignored by git).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from app.platform.clock import now_ms
from app.platform.settings import Settings
from tests.console_data import (
    CONSOLE_TOKEN,
    console_settings,
    dead_letter,
    fail_reply,
    project,
    receive,
    reply,
    summarize,
)

expect = pytest.importorskip(
    "playwright.async_api", reason="Playwright is not installed: pip install -e '.[test]'"
).expect


async def _seed(redis: Redis, settings: Settings) -> tuple[str, str]:
    """A small deployment: a few customers, replies of every kind, a summary, a dead letter.
    Returns the user id of the main conversation and the dead letter's id."""
    start = now_ms() - 300_000
    first, second = await receive(redis, settings, "15550001111",
                                  ["Hi! Do you deliver to Pune?", "Also, <script>alert(1)</script>"
                                   " what are your opening hours?"], received_ms=start)
    await reply(redis, settings, first, "Yes, we deliver across Pune within two days.",
                at_ms=start + 1_500)
    await reply(redis, settings, second, "We are open 9:00–19:00, Monday to Saturday.",
                contextual=True, at_ms=start + 4_000)
    [third] = await receive(redis, settings, "15550001111", ["Great, thanks"],
                            received_ms=start + 60_000)
    await reply(redis, settings, third, "Noted.", fallback=True, at_ms=start + 61_000)
    [fourth] = await receive(redis, settings, "15550001111", ["Can I pay on delivery?"],
                             received_ms=start + 120_000)
    await fail_reply(redis, settings, fourth)
    await summarize(redis, settings, fourth,
                    "Customer asked about delivery to Pune, opening hours and paying on "
                    "delivery.")
    for n, phone in enumerate(("15550002222", "15550003333", "447700900123")):
        await receive(redis, settings, phone, [f"Hello from customer {n}"],
                      received_ms=start + 150_000 + n * 1_000)
    [stuck] = await receive(redis, settings, "15550004444", ["Is anyone there?"],
                            received_ms=start + 200_000)
    await project(redis, settings)
    return first.user_id, await dead_letter(redis, settings, stuck)


async def test_an_operator_signs_in_reads_a_chat_and_retries_a_dead_letter(
    settings: Settings, redis: Redis, browser_page: Any, served: Callable[[Settings], str],
    screenshot_dir: Path,
) -> None:
    on = console_settings(settings)
    user_id, dlq_id = await _seed(redis, on)
    base = served(on)
    page = browser_page

    await page.goto(f"{base}/console")
    assert page.url == f"{base}/console/login"
    await page.fill("#token", "a-wrong-token")
    await page.click("button[type=submit]")
    assert await page.locator("[role=alert]").inner_text() == "Wrong token."
    await page.screenshot(path=str(screenshot_dir / "sign-in.png"))
    await page.fill("#token", CONSOLE_TOKEN)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/console")
    assert await page.locator("h1").first.inner_text() == "Overview refreshes every 5 s"
    assert await page.locator("svg.chart polyline").count() == 2
    assert await page.locator("text=projector").count() >= 1
    # The overview refreshes itself through console.js (no inline script runs).
    await page.locator("#overview-live").evaluate("box => { box.innerHTML = 'stale'; }")
    await expect(page.locator("#overview-live")).to_contain_text("Consumer groups",
                                                                timeout=10_000)
    await page.screenshot(path=str(screenshot_dir / "overview.png"), full_page=True)

    await page.click("nav >> text=Conversations")
    await page.wait_for_url(f"{base}/console/conversations")
    assert await page.locator("table.conversations tbody tr").count() == 5
    await page.fill("#q", "15550001111")
    await page.click("form.search button")
    assert await page.locator("table.conversations tbody tr").count() == 1
    await page.screenshot(path=str(screenshot_dir / "conversations.png"), full_page=True)
    await page.click("table.conversations a")
    await page.wait_for_url(f"{base}/console/conversations/{user_id}")
    quote = page.locator(".bubble.outbound blockquote.quote")
    assert await quote.count() == 1
    assert "what are your opening hours?" in await quote.inner_text()
    asked = page.locator(".bubble.inbound", has_text="what are your opening hours?")
    assert "<script>alert(1)</script>" in await asked.inner_text()  # shown as text
    assert await page.locator(".badge.fallback").count() == 1
    assert await page.locator(".ticks.sent").count() == 3
    assert "Reply failed" in await page.locator(".bubble.outbound.failed").inner_text()
    assert "opening hours" in await page.locator("aside.summary").inner_text()
    await page.screenshot(path=str(screenshot_dir / "conversation.png"), full_page=True)

    await page.click("nav >> text=Dead letters")
    await page.wait_for_url(f"{base}/console/dead-letters")
    row = page.locator(f"tr[data-dlq-id='{dlq_id}']")
    assert await row.count() == 1
    await page.screenshot(path=str(screenshot_dir / "dead-letters.png"), full_page=True)
    await row.get_by_role("button", name="Retry").click()
    await page.wait_for_url(f"{base}/console/dead-letters?done=retried")
    assert await page.locator(f"tr[data-dlq-id='{dlq_id}']").count() == 0
    assert "Retried" in await page.locator("[role=status]").inner_text()
    await page.screenshot(path=str(screenshot_dir / "dead-letters-after-retry.png"),
                          full_page=True)


async def test_the_sign_in_link_opens_the_console_and_leaves_no_token_in_the_address(
    settings: Settings, redis: Redis, browser_page: Any, served: Callable[[Settings], str],
) -> None:
    base = served(console_settings(settings))
    page = browser_page
    await page.goto(f"{base}/console?token={CONSOLE_TOKEN}")
    assert page.url == f"{base}/console"
    cookies = await page.context.cookies()
    [session] = [c for c in cookies if c["name"] == "mecove_console"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""  # not readable by scripts
