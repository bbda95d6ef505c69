"""Scenarios run by the *official* dream-engine 0.5.0 client, in its own virtualenv.

Run as ``.venv-official/bin/python tests/server/official_scenarios.py SCENARIO`` with
DREAM_BASE_URL / DREAM_API_KEY / SPEC / OUT in the environment; prints one JSON object.
It must only import the official package (the import name `dream` is shared), numpy,
PIL and the standard library: nothing from this repository.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import numpy as np

import dream

SPEC = os.environ["SPEC"]
RES = int(os.environ["RES"])


def frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((RES, RES, 3), 235, np.uint8)
    y, x = rng.integers(RES // 4, 3 * RES // 4, 2)
    img[y - 3 : y + 3, x - 3 : x + 3] = (30, 60, 200)
    return img


def actions(T: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(100, 400, (T, 2)).astype(np.float32)


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def err(exc: BaseException) -> dict:
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "status_code": getattr(exc, "status_code", None),
        "request_id": getattr(exc, "request_id", None),
        "retry_after": getattr(exc, "retry_after", None),
        "balance_mils": getattr(exc, "balance_mils", None),
        "requested_mils": getattr(exc, "requested_mils", None),
    }


def scenario_catalog(c: dream.Client) -> dict:
    models = c.models.list()
    m = c.models.get(SPEC)
    specs = c.specs()
    return {
        "slugs": [x.slug for x in models],
        "active": m.active,
        "action_dim": m.action_dim,
        "resolution": list(m.resolution),
        "price": m.spec.price_per_frame_usd,
        "default_price": specs["default_price_usd_per_frame"],
        "healthz": c.healthz(),
        "status_ready": c.status()["ready"],
    }


def scenario_predict(c: dream.Client) -> dict:
    m = c.models.get(SPEC)
    r = m.predict(start_frame=frame(1), actions=actions(6, 1), seed=0)
    mp4 = r.mp4_bytes()  # downloaded from the signed video_url, no auth
    return {"id": r.id, "frames": r.frames, "resolution": list(r.resolution), "cost_usd": r.cost_usd,
            "video_url": r.video_url, "mp4_len": len(mp4), "model": r.model}


def scenario_fallback(c: dream.Client) -> dict:
    """/v1/rollouts unreachable (simulated connect failure): the unmodified client falls back to /v1/predict."""
    import httpx

    def unreachable(*args, **kwargs):
        raise httpx.ConnectError("simulated: /v1/rollouts unreachable")

    c._predict_rollouts_raw = unreachable  # the network fails; the client's own fallback logic runs
    before = c.billing.balance().balance_mils
    r = c.models.get(SPEC).predict(start_frame=frame(2), actions=actions(4, 2))
    after = c.billing.balance().balance_mils
    return {"id": r.id, "model": r.model, "cost_usd": r.cost_usd, "mp4_len": len(r.mp4_bytes()),
            "spent_mils": before - after}


def scenario_timeout_fallback(c: dream.Client) -> dict:
    """A /v1/rollouts that outlives its timeout makes 0.5.0 resubmit to /v1/predict (WP §7.3):
    the server must not charge twice."""
    before = c.billing.balance().balance_mils
    out: dict = {}
    try:
        r = c.models.get(SPEC).predict(start_frame=frame(3), actions=actions(4, 3), timeout_s=0.001)
        out["id"] = r.id
    except dream.DreamError as exc:
        out["error"] = err(exc)
    out["spent_mils"] = before - c.billing.balance().balance_mils
    return out


def scenario_batch(c: dream.Client) -> dict:
    b = c.models.get(SPEC).predict_batch(start_frame=frame(4), actions=np.stack([actions(4, s) for s in range(3)]))
    raw = c.predict_batch(frame_bytes=png(frame(4)), actions_bytes_list=[npy(actions(4, 0)), npy(actions(4, 1))])
    return {"batch_size": b.batch_size, "len": len(b), "cost_usd": b.cost_usd, "child_costs": [x.cost_usd for x in b],
            "mp4_lens": [len(x.mp4_bytes()) for x in b], "raw_batch_size": raw.batch_size,
            "raw_request_id": raw.request_id}


def scenario_predict_many(c: dream.Client) -> dict:
    out = Path(os.environ["OUT"])
    src_dir = out / "rows"
    src_dir.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        (src_dir / f"ep{i}.png").write_bytes(png(frame(10 + i)))
        (src_dir / f"ep{i}.npy").write_bytes(npy(actions(4, 10 + i)))
    before = c.billing.balance().balance_mils
    res = c.predict_many(dream.io.frames_from_dir(src_dir), dream.io.RolloutSink.dir(out / "sink"), spec=SPEC,
                         concurrency=2, progress=False)
    import pyarrow.parquet as pq

    table = pq.read_table(out / "sink" / "metadata.parquet").to_pylist()
    return {"ok": res.ok, "failed": res.failed, "videos": sorted(p.name for p in (out / "sink" / "videos").iterdir()),
            "metadata_specs": sorted({row["spec"] for row in table}),
            "statuses": sorted({row["status"] for row in table}), "spent_mils": before - c.billing.balance().balance_mils}


def scenario_billing(c: dream.Client) -> dict:
    bal = c.billing.balance()
    txns = c.billing.transactions(limit=10)
    return {"customer_id": bal.customer_id, "balance_mils": bal.balance_mils, "balance_usd": bal.balance_usd,
            "kinds": [t.kind for t in txns], "first_amount": txns[0].amount_mils if txns else None,
            "first_detail": txns[0].detail if txns else None}


def scenario_session(c: dream.Client) -> dict:
    s = c.sessions.create(model=SPEC, initial_frame=frame(5), seed=0)
    try:
        first = [f.shape for f in s.submit_actions(actions(6, 5))]
        second = [f.shape for f in s.submit_actions(actions(2, 6))]
        env = s.envelope
    finally:
        s.close()
    return {"first": len(first), "second": len(second), "shape": list(first[0]), "frames_streamed": env["frames_streamed"],
            "billing": env.get("billing"), "state_before_close": env.get("state"), "closed": s.closed}


def scenario_errors(c: dream.Client) -> dict:
    base = os.environ["DREAM_BASE_URL"]
    keys = json.loads(os.environ["OTHER_KEYS"])
    out: dict = {}
    bad = dream.Client(base_url=base, api_key="dre_definitely_not_a_key")
    try:
        bad.models.get(SPEC).predict(start_frame=frame(), actions=actions())
    except dream.DreamError as exc:
        out["auth"] = err(exc)
    revoked = dream.Client(base_url=base, api_key=keys["revoked"])
    try:
        revoked.billing.balance()
    except dream.DreamError as exc:
        out["revoked"] = err(exc)
    poor = dream.Client(base_url=base, api_key=keys["poor"])
    try:
        poor.models.get(SPEC).predict(start_frame=frame(), actions=actions())
    except dream.DreamError as exc:
        out["credits"] = err(exc)
    limited = dream.Client(base_url=base, api_key=keys["limited"], retry_policy=dream.RetryPolicy(max_attempts=1))
    try:
        for _ in range(3):
            limited.billing.balance()
    except dream.DreamError as exc:
        out["rate"] = err(exc)
    try:
        c.predict(frame_bytes=b"this is not an image", actions_bytes=npy(actions()))
    except dream.DreamError as exc:
        out["validation"] = err(exc)
    try:
        c.predict(frame_bytes=png(frame()), actions_bytes=npy(np.zeros((4, 5), np.float32)))
    except dream.DreamError as exc:
        out["action_dim"] = err(exc)
    try:
        c.predict(frame_bytes=png(frame()), actions_bytes=npy(np.zeros((600_000, 2), np.float32)))
    except dream.DreamError as exc:
        out["too_big"] = err(exc)
    h = c.models.get(SPEC)
    h._spec.slug = "no-such-model"  # a handle for a model the server does not serve
    try:
        h.predict(start_frame=frame(), actions=actions())
    except dream.DreamError as exc:
        out["unknown_model"] = err(exc)
    try:
        c.models.get("no-such-model")
    except dream.DreamError as exc:
        out["not_found"] = err(exc)
    return out


if __name__ == "__main__":
    name = sys.argv[1]
    client = dream.Client()
    assert dream.__version__ == "0.5.0" and "site-packages" in dream.__file__, dream.__file__
    print(json.dumps(globals()[f"scenario_{name}"](client), default=str))
