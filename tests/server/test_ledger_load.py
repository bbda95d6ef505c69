"""Under concurrent load with injected engine failures the ledger stays exact.

Many concurrent requests (single rollouts fused by the dynamic batcher, JSON rollouts,
batches, idempotent twins), some poisoned to fail inside the engine, some refused for
lack of credit. Afterwards: every request got an answer, and the ledger's balance, its
transaction sum and its settled reservations all equal the credits minus the sum of
what successful calls reported charging, to the mil.
"""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import numpy as np

from dream.server import Settings, create_app
from tests.server import tiny
from tests.server.conftest import actions_array, frame_array, npy, png

CREDITS = 250  # mils: enough for most calls, not all, so 402s happen under load too


async def _run(tmp_path) -> None:
    app = create_app(Settings(
        specs=["tiny-16"], db_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}", data_dir=str(tmp_path / "data"),
        batch_window_ms=20, max_fused_batch=8, rate_limit_rps=0, max_concurrent_rollouts=0,
    ))
    svc = app.state.services
    issued = svc.ledger.create_key("load", credits_mils=CREDITS)
    auth = {"Authorization": f"Bearer {issued.key}"}
    frame = png(frame_array(16))
    rng = random.Random(7)

    def acts(i: int, fail: bool, T: int = 4) -> bytes:
        a = actions_array(T, seed=i)
        if fail:
            a[1, 0] = tiny.FAIL_VALUE
        return npy(a)

    requests = []
    for i in range(60):
        fail = rng.random() < 0.25
        kind = rng.choice(["predict", "predict", "rollout", "batch"])
        if kind == "predict":
            requests.append(("POST", "/v1/predict", {"data": {"seed": "0"}, "files": {
                "frame": ("f.png", frame, "image/png"), "actions": ("a.npy", acts(i, fail), "application/octet-stream")}}))
        elif kind == "rollout":
            requests.append(("POST", "/v1/rollouts", {"data": {"params": json.dumps({"model": "tiny-16"})}, "files": {
                "start_frame": ("f.png", frame, "image/png"), "actions": ("a.npy", acts(i, fail), "application/octet-stream")}}))
        else:
            files = [("frame", ("f.png", frame, "image/png"))] + [
                ("actions", (f"a{k}.npy", acts(i * 10 + k, fail and k == 1), "application/octet-stream")) for k in range(3)]
            requests.append(("POST", "/v1/predict/batch", {"files": files}))
    # Idempotent twins: the same key sent concurrently runs once and is charged once.
    for _ in range(4):
        requests.append(("POST", "/v1/predict", {"headers": {"Idempotency-Key": "twin"}, "files": {
            "frame": ("f.png", frame, "image/png"), "actions": ("a.npy", acts(999, False), "application/octet-stream")}}))
    rng.shuffle(requests)

    async with app.router.lifespan_context(app):
        assert await asyncio.to_thread(svc.readiness.wait, 60)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            sem = asyncio.Semaphore(12)

            async def send(method: str, path: str, kw: dict) -> httpx.Response:
                async with sem:
                    headers = {**auth, **kw.pop("headers", {})}
                    return await client.request(method, path, headers=headers, **kw)

            responses = await asyncio.gather(*(send(m, p, dict(kw)) for m, p, kw in requests))

    statuses = [r.status_code for r in responses]
    assert len(responses) == len(requests)  # nothing lost
    assert set(statuses) <= {200, 402, 500}, statuses
    assert statuses.count(500) > 0 and statuses.count(402) > 0 and statuses.count(200) > 10
    charged = 0
    for r in responses:
        if r.status_code != 200 or r.headers.get("x-dreamengine-idempotent-replay") == "true":
            continue
        usd = r.json()["cost_usd"] if r.headers["content-type"].startswith("application/json") else float(
            r.headers["x-dreamengine-estimated-charge-usd"])
        charged += round(usd * 10_000)
    twins = [r for r in responses if r.request.headers.get("idempotency-key") == "twin"]
    assert len({r.headers.get("x-dreamengine-rollout-id") for r in twins if r.status_code == 200}) <= 1
    audit = svc.ledger.audit(issued.customer_id)
    assert audit == {
        "balance_mils": CREDITS - charged,
        "transactions_sum_mils": CREDITS - charged,
        "credits_mils": CREDITS,
        "settled_mils": charged,
        "held_reservations": 0,
    }
    assert np.isfinite(charged)


def test_ledger_total_equals_successful_charges_under_load_with_failures(tmp_path) -> None:
    asyncio.run(_run(tmp_path))
