"""A real Chromium (Debian's, installed by scripts/ensure-browser.sh) driven by Playwright, against a real
`sidyp serve`. Playwright's own browser download is never used."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.service.conftest import embedded_service  # noqa: F401  (the same real service as the API tests)

CHROMIUM = "/usr/bin/chromium"


@contextmanager
def app_in_thread(settings, store) -> Iterator[str]:
    """The real app over `store` served by uvicorn in a thread (for jobs whose outputs a test wrote
    directly); yields its base URL and stops it afterwards."""
    import uvicorn

    from app.main import create_app
    from tests.conftest import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, store), port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: run 'make test' (it installs it) or 'bash scripts/ensure-browser.sh'"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A page with everything that must not happen recorded: dialogs, script errors, key-bearing URLs."""

    def __init__(self, browser, base_url: str):
        self.context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.base_url = base_url
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.urls: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.urls.append(r.url))

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(browser):
    """`open_page(base_url)`: a fresh browser context's watched page, closed after the test."""
    opened: list[Watched] = []

    def make(base_url: str) -> Watched:
        opened.append(Watched(browser, base_url))
        return opened[-1]

    yield make
    for w in opened:
        w.close()


@pytest.fixture
def watched(open_page, request):
    return open_page(request.getfixturevalue("embedded_service").base_url)


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    """docs/img when SIDYP_CONSOLE_SCREENSHOTS names it (to refresh the README's pictures), else a temp dir."""
    target = os.environ.get("SIDYP_CONSOLE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        return Path(target)
    return tmp_path_factory.mktemp("screenshots")
