"""A real browser for the console's end-to-end tests: Debian's headless Chromium, driven by
Playwright without its own browser download. The tests skip, saying why, only when no Chromium
or no Playwright is installed (``.ci/run`` installs Chromium with apt)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from app.devtools.ports import free_port
from app.ingress.app_factory import create_app
from app.platform.settings import Settings

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("MECOVE_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium: install Debian's package (apt-get install -y chromium) or "
                    "set MECOVE_CHROMIUM to a Chromium binary")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("Playwright is not installed: pip install -e '.[test]'")
    return path


@pytest.fixture
async def browser_page(chromium: str) -> AsyncIterator[Any]:
    """A fresh page of a headless Chromium (a new browser per test: no shared cookies)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            yield page
        finally:
            await browser.close()


@pytest.fixture
def screenshot_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[Any]:
    """``served(settings)`` -> the base URL of the real ingress app on uvicorn, in a thread."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(settings: Settings) -> str:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1",
                                               port=port, log_config=None, lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the ingress did not start")
            time.sleep(0.05)
        servers.append((server, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)
