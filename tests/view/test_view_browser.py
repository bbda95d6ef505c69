"""The viewer in a real browser: Debian's headless Chromium driven by Playwright
(tests/view/browser.py). Screenshots are saved under pytest's tmp dir as test artefacts;
their paths are printed (`pytest -s` shows them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from tests.view.browser import launch, require_browser, serve
from tests.view.browser import screenshot as _shot

require_browser()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    yield from launch()


@pytest.fixture(scope="module")
def view_url(bulk_output: Path) -> Iterator[str]:
    from dream.view import open_view

    with serve(open_view(str(bulk_output))) as url:
        yield url


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


def test_qc_scores_sort_worst_first_and_open_side_by_side(browser: object, bulk_output: Path,
                                                          tmp_path: Path) -> None:
    import shutil

    from dream.view import open_view
    from dream.view.qc import run_qc

    output = Path(shutil.copytree(bulk_output, tmp_path / "bulk"))
    run_qc(output, parent_key="source_episode", progress=False)
    with serve(open_view(str(output))) as url:
        page = browser.new_page(viewport={"width": 1200, "height": 700})
        page.goto(url)
        page.wait_for_selector("#drift-sort:not([hidden])")
        page.click("#drift-sort")
        page.wait_for_function("document.querySelector('#grid .card').dataset.rowId === 'ep00_aug2'")
        first = page.locator("#grid .card").first
        assert "drift" in first.inner_text() and first.locator(".badge.flagged").count() == 1
        page.wait_for_function("[...document.querySelectorAll('#grid .card img')].every(i => i.naturalWidth > 0)")
        _shot(page, tmp_path, "qc_grid")
        page.click("#filters button[data-status=flagged]")
        page.wait_for_function("document.querySelectorAll('#grid .card').length === 1")
        first.click()
        page.wait_for_selector("#compare-btn:not([hidden])")
        assert "flagged" in page.inner_text("#row-title")
        page.click("#compare-btn")
        page.wait_for_selector("#compare-view:not([hidden]) #psnr-plot svg polyline")
        assert page.inner_text("#cmp-right-label") == "parent ep00"
        page.fill("#cmp-scrubber", "6")
        page.dispatch_event("#cmp-scrubber", "input")
        _shot(page, tmp_path, "qc_side_by_side", "#compare-view")


def test_a_browser_without_h264_gets_the_frame_strip(browser: object, view_url: str, tmp_path: Path) -> None:
    """Chromium builds without proprietary codecs say '' to canPlayType('video/mp4'): the strip plays instead."""
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script("HTMLMediaElement.prototype.canPlayType = () => '';")
    page.goto(view_url)
    page.wait_for_selector("#grid .card[data-row-id=ep00]")
    page.click("#grid .card[data-row-id=ep00]")
    page.wait_for_function("Number(document.querySelector('#strip')?.dataset.frame) > 0", timeout=20_000)
    assert page.locator("#player video").count() == 0
    page.click("#strip-play")  # pause, then scrub to the last frame
    page.fill("#scrubber", "8")
    page.dispatch_event("#scrubber", "input")
    assert page.get_attribute("#strip", "data-frame") == "8"
    assert page.inner_text("#frame-label") == "frame 9 / 9"
    _shot(page, tmp_path, "strip", "#row-view .panel")
    assert errors == []
