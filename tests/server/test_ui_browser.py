"""/ui in headless Chromium: sign in with a key, roll out in the playground, see it and its cost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("uvicorn")

from tests.view.browser import launch, require_browser, screenshot, serve

require_browser()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()


def test_sign_in_and_playground_in_chromium(browser: Any, tmp_path: Path) -> None:
    from dream.inputs import encode_npy, encode_png
    from dream.server import Settings, create_app
    from tests.server.conftest import actions_array, frame_array

    app = create_app(Settings(specs=["tiny-16"], db_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
                              data_dir=str(tmp_path / "data"), batch_window_ms=0, url_secret="s"))
    ledger = app.state.services.ledger
    key, other = ledger.create_key("erin", credits_mils=100_000).key, ledger.create_key("frank", credits_mils=100_000).key
    (tmp_path / "start.png").write_bytes(encode_png(frame_array(16)))
    (tmp_path / "actions.npy").write_bytes(encode_npy(actions_array(T=6)))
    (tmp_path / "other.npy").write_bytes(encode_npy(actions_array(T=6, seed=1)))
    for name in ("start.png", "actions.npy", "other.npy"):
        assert (tmp_path / name).stat().st_size > 0
    with serve(app) as base:
        assert app.state.services.readiness.wait(60)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        def roll_out(api_key: str, actions: str) -> str:
            page.goto(base + "ui/")
            page.wait_for_selector("#key-form:not([hidden])")
            page.fill("#api-key", api_key)
            page.click("#key-form button[type=submit]")
            page.wait_for_selector("#playground:not([hidden])")
            page.set_input_files("#play-frame", str(tmp_path / "start.png"))
            page.set_input_files("#play-actions", str(tmp_path / actions))
            page.click("#play-form button[type=submit]")
            page.wait_for_selector("#play-cost")
            return page.inner_text("#play-cost")

        roll_out(other, "other.npy")  # frank's rollout must never show on erin's page
        page.evaluate("sessionStorage.clear()")
        cost = roll_out(key, "actions.npy")
        assert "7 frames" in cost and "$0.0007" in cost
        page.wait_for_selector("#row-view:not([hidden])")
        page.wait_for_function(
            """() => { const v = document.querySelector('#player video');
                       if (v) return v.currentTime > 0;
                       const s = document.querySelector('#strip'); return s && Number(s.dataset.frame) > 0; }""",
            timeout=20_000,
        )
        screenshot(page, tmp_path, "ui_playground")
        page.click("#close-row")
        page.wait_for_function("document.querySelectorAll('#grid .card').length === 1")
        assert page.locator("#grid .card").get_attribute("data-row-id").startswith("rollout_")
        assert page.inner_text("#filters button[data-status=all] b") == "1"
        assert errors == []


def test_a_page_of_thumbnails_waits_out_the_keys_rate_limit(browser: Any, tmp_path: Path) -> None:
    """/ui reads count against the key's rate limit; a page that outruns the key's burst
    waits out each 429's Retry-After and still shows every thumbnail."""
    import httpx

    from dream.inputs import encode_npy, encode_png
    from dream.server import Settings, create_app
    from dream.server.services.ledger import KeyLimits
    from tests.server.conftest import actions_array, frame_array

    app = create_app(Settings(specs=["tiny-16"], db_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
                              data_dir=str(tmp_path / "data"), batch_window_ms=0, url_secret="s",
                              rate_limit_rps=4, rate_limit_burst=3))
    ledger = app.state.services.ledger
    key = ledger.create_key("gina", credits_mils=100_000).key
    setup = ledger.create_key("gina", limits=KeyLimits(rate_limit_rps=0)).key  # same customer, exempt
    with serve(app) as base:
        assert app.state.services.readiness.wait(60)
        for seed in range(8):
            files = {"frame": ("f.png", encode_png(frame_array(16)), "image/png"),
                     "actions": ("a.npy", encode_npy(actions_array(T=4, seed=seed)), "application/octet-stream")}
            r = httpx.post(base + "v1/predict", files=files, headers={"Authorization": f"Bearer {setup}"}, timeout=60)
            assert r.status_code == 200, r.text
        statuses: list[int] = []
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("response", lambda resp: statuses.append(resp.status) if "/ui/api/" in resp.url else None)
        page.goto(base + "ui/")
        page.wait_for_selector("#key-form:not([hidden])")
        page.fill("#api-key", key)
        page.click("#key-form button[type=submit]")
        page.wait_for_function(
            "[...document.querySelectorAll('#grid .card img')].filter(i => i.src.startsWith('blob:')).length === 8",
            timeout=30_000,
        )
        assert 429 in statuses  # the page did outrun the burst of 3 …
        assert page.inner_text("#message") == ""  # … and shows no error for it
        screenshot(page, tmp_path, "ui_rate_limited_grid")
