"""/ui: the viewer over the signed-in key's rollout history, and its playground."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from tests.server.conftest import actions_array, npy, predict_files

pytest.importorskip("PIL")


def _rollout(h, key: str, seed: int = 0) -> str:
    # distinct actions: identical un-keyed requests would be deduplicated into one rollout
    f = predict_files(actions=npy(actions_array(seed=seed)))
    r = h.client.post("/v1/rollouts", files={"start_frame": f["frame"], "actions": f["actions"]},
                      data={"params": json.dumps({"model": "tiny-16"})}, headers=h.auth(key))
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_page_loads_without_a_key_and_the_api_needs_one(make_client) -> None:
    h = make_client()
    r = h.client.get("/ui/")
    assert r.status_code == 200 and "static/view.js" in r.text
    assert h.client.get("/ui/static/view.js").status_code == 200
    r = h.client.get("/ui/api/rows")
    assert r.status_code == 401
    assert h.client.get("/ui/api/rows", headers=h.auth("dre_not_a_key")).status_code in (401, 403)
    assert "/ui/api/rows" not in h.client.get("/openapi.json").text


def test_one_customer_never_sees_another_customers_rollouts(make_client) -> None:
    h = make_client()
    alice, bob = h.key("alice"), h.key("bob")
    a1, a2 = _rollout(h, alice), _rollout(h, alice, seed=1)
    b1 = _rollout(h, bob)
    page = h.client.get("/ui/api/rows", headers=h.auth(alice)).json()
    assert {r["row_id"] for r in page["rows"]} == {a1, a2} and page["counts"]["all"] == 2
    assert h.client.get("/ui/api/rows", headers=h.auth(bob)).json()["counts"]["all"] == 1
    assert h.client.get("/ui/api/rows", headers=h.auth(alice), params={"q": b1[-12:]}).json()["total"] == 0
    for path in ("row", "video", "thumb", "strip", "compare"):
        r = h.client.get(f"/ui/api/{path}", params={"id": b1}, headers=h.auth(alice))
        assert r.status_code == 404, path
        assert b1 in r.json()["detail"]
    assert h.client.get("/ui/api/video", params={"id": b1}, headers=h.auth(bob)).status_code == 200
    summary = h.client.get("/ui/api/summary", headers=h.auth(alice)).json()
    assert summary["customer"] == "alice" and summary["playground"] and summary["models"] == ["tiny-16"]


def test_history_rows_play_and_page(make_client) -> None:
    from PIL import Image

    from dream.engine.video import decode_mp4

    h = make_client()
    key = h.key("carol")
    ids = [_rollout(h, key, seed=i) for i in range(3)]
    first = h.client.get("/ui/api/rows", params={"limit": 2}, headers=h.auth(key)).json()
    second = h.client.get("/ui/api/rows", params={"limit": 2, "offset": 2}, headers=h.auth(key)).json()
    assert first["total"] == 3 and [r["row_id"] for r in first["rows"] + second["rows"]] == ids[::-1]  # newest first
    asc = h.client.get("/ui/api/rows", params={"sort": "created"}, headers=h.auth(key)).json()
    assert [r["row_id"] for r in asc["rows"]] == ids
    row = first["rows"][0]
    assert row["status"] == "ok" and row["has_video"] and row["columns"]["model"] == "tiny-16"
    mp4 = h.client.get("/ui/api/video", params={"id": ids[0]}, headers=h.auth(key)).content
    frames = decode_mp4(mp4)
    thumb = Image.open(io.BytesIO(h.client.get("/ui/api/thumb", params={"id": ids[0]}, headers=h.auth(key)).content))
    assert thumb.size == (2 * frames.shape[2] + 2, frames.shape[1])
    r = h.client.get("/ui/api/rows", params={"sort": "cost_usd"}, headers=h.auth(key))
    assert r.status_code == 422 and "'cost_usd'" in r.json()["detail"]


def test_playground_rolls_out_charges_and_lists_the_rollout(make_client) -> None:
    from dream.inputs import encode_png

    h = make_client()
    key = h.key("dave", credits_mils=1_000_000)
    customer = h.services.ledger.authenticate(key).customer_id
    before = h.services.ledger.balance_mils(customer)
    frame = encode_png(np.full((16, 16, 3), 200, np.uint8))
    actions = npy(np.zeros((4, 2), np.float32))
    r = h.client.post("/ui/api/playground", headers=h.auth(key),
                      files={"start_frame": ("f.png", frame, "image/png"), "actions": ("a.npy", actions, "application/octet-stream")},
                      data={"model": "tiny-16"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["frames"] == 5 and out["cost_usd"] == pytest.approx(5 * 0.0001)
    rows = h.client.get("/ui/api/rows", headers=h.auth(key)).json()["rows"]
    assert [row["row_id"] for row in rows] == [out["rollout_id"]]
    assert before - h.services.ledger.balance_mils(customer) == 5  # $0.0005 = 5 mils
    bad = h.client.post("/ui/api/playground", headers=h.auth(key),
                        files={"start_frame": ("f.png", frame, "image/png"),
                               "actions": ("a.npy", npy(np.zeros((4, 3), np.float32)), "application/octet-stream")},
                        data={"model": "tiny-16"})
    assert bad.status_code == 422 and "(4, 3)" in bad.text
    assert h.client.post("/ui/api/playground", files={"start_frame": ("f.png", frame), "actions": ("a.npy", actions)},
                         data={"model": "tiny-16"}).status_code == 401
