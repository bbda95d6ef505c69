"""Dynamic batching end to end: concurrent /v1/predict calls become one fused engine call."""

from __future__ import annotations

import asyncio

import httpx

from dream.server import Settings, create_app
from tests.server import tiny
from tests.server.conftest import actions_array, frame_array, npy, png


async def _fire(tmp_path, window_ms: float, n: int) -> tuple[list[httpx.Response], list[int]]:
    app = create_app(Settings(
        specs=["tiny-16"], db_url=f"sqlite:///{tmp_path / f'l{window_ms}.sqlite3'}", data_dir=str(tmp_path / "d"),
        batch_window_ms=window_ms, max_fused_batch=n, rate_limit_rps=0, max_concurrent_rollouts=0,
    ))
    svc = app.state.services
    key = svc.ledger.create_key("b", credits_mils=10_000).key
    async with app.router.lifespan_context(app):
        assert await asyncio.to_thread(svc.readiness.wait, 60)
        tiny.TinyRunner.calls.clear()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            files = [
                {"frame": ("f.png", png(frame_array(16, seed=i)), "image/png"),
                 "actions": ("a.npy", npy(actions_array(4, seed=i)), "application/octet-stream")}
                for i in range(n)
            ]
            responses = await asyncio.gather(*(
                client.post("/v1/predict", files=f, headers={"Authorization": f"Bearer {key}"}) for f in files
            ))
        return list(responses), list(tiny.TinyRunner.calls)


def test_concurrent_single_rollouts_are_fused(tmp_path) -> None:
    # A window far longer than the test: the batch closes because it is full, not by waiting.
    responses, calls = asyncio.run(_fire(tmp_path, window_ms=60_000, n=4))
    assert [r.status_code for r in responses] == [200] * 4
    assert calls == [4] and {r.headers["x-dreamengine-fused"] for r in responses} == {"4"}
    assert len({r.content for r in responses}) == 4  # each caller got its own rollout


def test_window_zero_turns_batching_off(tmp_path) -> None:
    responses, calls = asyncio.run(_fire(tmp_path, window_ms=0, n=3))
    assert calls == [1, 1, 1] and {r.headers["x-dreamengine-fused"] for r in responses} == {"1"}
