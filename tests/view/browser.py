"""Browser-test support: Debian's headless Chromium through Playwright, and a uvicorn thread.

Playwright never downloads a browser here: it launches /usr/bin/chromium (the `chromium`
Debian package, which `.ci/run` installs when missing).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("DREAM_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium's own outbound connections hang on a
# closed network; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def require_browser() -> Any:
    """playwright.sync_api, or skip the module when Playwright or Chromium is missing."""
    api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)
    return api


def launch() -> Iterator[Any]:
    """A headless Chromium for the duration of a fixture."""
    api = require_browser()
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    with api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` with uvicorn (lifespan included) on a free 127.0.0.1 port in a thread; yields its URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(10)


def screenshot(page: Any, tmp_path: Path, name: str, selector: str | None = None) -> Path:
    """Save a screenshot as a test artefact and print its path (`pytest -s` shows it)."""
    path = tmp_path / f"{name}.png"
    if selector:
        page.locator(selector).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
