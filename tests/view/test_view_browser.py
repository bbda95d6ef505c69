"""The viewer in a real browser: Debian's headless Chromium driven by Playwright.

Playwright never downloads a browser here: it launches /usr/bin/chromium (the `chromium`
Debian package, which `.ci/run` installs when missing). Screenshots are saved under
pytest's tmp dir as test artefacts; their paths are printed (`pytest -s` shows them).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("DREAM_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium's own outbound connections hang on a
# closed network; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")
if not shutil.which(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)


def serve(app: object) -> Iterator[str]:
    """Run `app` with uvicorn on a free 127.0.0.1 port in a thread; yields its base URL."""
    import time

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
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


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def view_url(bulk_output: Path) -> Iterator[str]:
    from dream.view import open_view

    yield from serve(open_view(str(bulk_output)))


def _shot(page: object, tmp_path: Path, name: str, selector: str | None = None) -> Path:
    path = tmp_path / f"{name}.png"
    if selector:
        page.locator(selector).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def test_page_filters_plays_and_compares_in_chromium(browser: object, view_url: str, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(view_url)
    page.wait_for_selector("#grid .card")
    assert page.locator("#grid .card").count() == 5
    # thumbnails load (made on the server from the mp4s)
    page.wait_for_function("document.querySelector('#grid .card[data-row-id=\"ep00\"] img').naturalWidth > 0")
    _shot(page, tmp_path, "grid")

    page.click("#filters button[data-status=failed]")
    page.wait_for_function("document.querySelectorAll('#grid .card').length === 1")
    card = page.locator("#grid .card")
    assert card.get_attribute("data-row-id") == "ep01_bad"
    assert "expects 2" in card.locator(".error").inner_text()
    _shot(page, tmp_path, "failed")

    page.click("#filters button[data-status=all]")
    page.fill("#search", "aug2")
    page.wait_for_function("document.querySelectorAll('#grid .card').length === 1")
    page.click("#grid .card[data-row-id=ep00_aug2]")
    page.wait_for_selector("#row-view:not([hidden])")
    # The video advances, or (a Chromium without H.264) the frame strip shows and advances.
    page.wait_for_function(
        """() => {
            const v = document.querySelector('#player video');
            if (v) return v.currentTime > 0;
            const s = document.querySelector('#strip');
            return s && s.style.backgroundImage && Number(s.dataset.frame) > 0;
        }""",
        timeout=20_000,
    )
    played = page.evaluate("document.querySelector('#player video') ? 'video' : 'strip'")
    print(f"row view played the rollout as: {played}")
    _shot(page, tmp_path, "row", "#row-view .panel")

    page.click("#compare-btn")
    page.wait_for_selector("#compare-view:not([hidden]) #psnr-plot svg polyline")
    points = page.get_attribute("#psnr-plot polyline", "points").split()
    assert len(points) == 9  # one PSNR per frame of the 8-action rollout
    page.fill("#cmp-scrubber", "8")
    page.dispatch_event("#cmp-scrubber", "input")
    assert page.get_attribute("#cmp-left", "data-frame") == "8" == page.get_attribute("#cmp-right", "data-frame")
    assert "dB" in page.inner_text("#cmp-frame-label")
    _shot(page, tmp_path, "side_by_side", "#compare-view")

    page.click("#close-row")
    page.click("#modes button[data-mode=table]")
    page.fill("#search", "")
    page.wait_for_function("document.querySelectorAll('#table tbody tr').length === 5")
    page.click("#table th[data-col=row_id]")
    page.click("#table th[data-col=row_id]")
    page.wait_for_function("document.querySelector('#table tbody tr').dataset.rowId === 'ep01_bad'")
    _shot(page, tmp_path, "table")
    assert errors == []
