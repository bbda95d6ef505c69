"""The embedded transport through the public SDK: handles, results, errors, idempotency."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dream
from dream.engine.engine import Engine

FRAME = np.random.default_rng(3).integers(0, 256, (16, 16, 3), dtype=np.uint8)
ACTS = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)


def png(arr: np.ndarray, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.fixture
def client() -> dream.Client:
    return dream.Client(engine=Engine(["shift-test", "shift-seeded", "shift-noweights", "shift-chunk4"]))


def test_no_base_url_means_embedded(client: dream.Client) -> None:
    assert client.is_local and client.base_url == "" and repr(client) == "Client(embedded)"


def test_models_list_and_get(client: dream.Client) -> None:
    handles = client.models.list()
    assert [h.slug for h in handles] == ["shift-test", "shift-seeded", "shift-noweights", "shift-chunk4"]
    h = client.models.get("shift-chunk4")
    assert (h.action_dim, h.chunk_size, h.resolution, h.active) == (2, 4, (16, 16), True)
    assert h.spec.fps == 10 and h.spec.price_per_frame_usd == 0.001 and h.spec.canonical_T == 8
    assert repr(h) == "ModelHandle(slug='shift-chunk4', active=True)"
    with pytest.raises(dream.ModelNotFoundError, match="nope"):
        client.models.get("nope")


def test_inactive_model_refuses_before_any_work(client: dream.Client) -> None:
    h = client.models.get("shift-noweights")
    assert not h.active and "DREAM_WEIGHTS_DIR" in h.spec.status_message
    with pytest.raises(dream.ModelNotActiveError, match=r"shift-noweights.*DREAM_WEIGHTS_DIR.*models\.list"):
        h.predict(start_frame=FRAME, actions=ACTS)
    with pytest.raises(dream.ModelNotActiveError):
        h.predict_batch(start_frame=FRAME, actions=ACTS[None])


def test_predict_returns_a_complete_rollout(client: dream.Client, tmp_path: Path) -> None:
    r = client.models.get("shift-test").predict(start_frame=FRAME, actions=ACTS)
    assert r.id.startswith("rollout_") and r.request_id == r.id and len(r.id) == len("rollout_") + 32
    assert (r.model, r.num_frames, r.resolution, r.customer_id) == ("shift-test", 5, (16, 16), "local")
    assert r.cost_usd == pytest.approx(5 * 0.001) and r.engine_wall_ms > 0 and r.wall_s == r.engine_wall_ms / 1000
    assert r.psnr_db is None and r.video_url == ""
    assert bytes(r.mp4_bytes)[4:8] == b"ftyp" and r.mp4_bytes() == r.mp4_bytes
    frames = r.frames
    assert frames.shape == (5, 16, 16, 3) and frames is r.video()
    assert r.save(tmp_path / "x.mp4").stat().st_size == len(r.mp4_bytes)


@pytest.mark.parametrize(
    "form",
    ["array", "chw", "float", "pil", "pil_rgba", "png_bytes", "grey_png", "path", "str_path"],
)
def test_every_start_frame_form(client: dream.Client, tmp_path: Path, form: str) -> None:
    p = tmp_path / "f.png"
    p.write_bytes(png(FRAME))
    value = {
        "array": FRAME,
        "chw": np.transpose(FRAME, (2, 0, 1)),
        "float": FRAME.astype(np.float32) / 255,
        "pil": Image.fromarray(FRAME),
        "pil_rgba": Image.fromarray(FRAME).convert("RGBA"),
        "png_bytes": png(FRAME),
        "grey_png": png(FRAME, "L"),
        "path": p,
        "str_path": str(p),
    }[form]
    r = client.models.get("shift-test").predict(start_frame=value, actions=ACTS)
    assert r.num_frames == 5


@pytest.mark.parametrize("form", ["array", "float64", "list", "npy_bytes", "path"])
def test_every_actions_form(client: dream.Client, tmp_path: Path, form: str) -> None:
    p = tmp_path / "a.npy"
    p.write_bytes(npy(ACTS))
    value = {"array": ACTS, "float64": ACTS.astype(np.float64), "list": ACTS.tolist(), "npy_bytes": npy(ACTS),
             "path": p}[form]
    r = client.models.get("shift-test").predict(start_frame=FRAME, actions=value)
    assert r.num_frames == 5


def test_byte_level_arguments_and_deprecated_paths(client: dream.Client, tmp_path: Path) -> None:
    h = client.models.get("shift-test")
    r = h.predict(frame_bytes=png(FRAME), actions_bytes=npy(ACTS))
    assert r.num_frames == 5
    (tmp_path / "f.png").write_bytes(png(FRAME))
    (tmp_path / "a.npy").write_bytes(npy(ACTS))
    with pytest.warns(DeprecationWarning, match="frame_path"):
        h.predict(frame_path=tmp_path / "f.png", actions_path=tmp_path / "a.npy")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start_frame": FRAME, "frame_bytes": b"x", "actions": ACTS}, "either start_frame= or"),
        ({"start_frame": FRAME, "actions": ACTS, "actions_bytes": b"x"}, "either actions= or"),
        ({"actions": ACTS}, "start_frame is required"),
        ({"start_frame": FRAME}, "actions is required"),
        ({"start_frame": FRAME, "actions": np.zeros((4, 3), np.float32)}, r"model expects 2, got array with shape \(4, 3\)"),
        ({"start_frame": b"GIF89a truncated", "actions": ACTS}, "start_frame"),
        ({"start_frame": FRAME, "actions": np.full((4, 2), np.nan, np.float32)}, "non-finite"),
        ({"start_frame": FRAME, "actions": np.zeros((0, 2), np.float32)}, "empty"),
        ({"start_frame": "/missing/frame.png", "actions": ACTS}, "does not exist: '/missing/frame.png'"),
    ],
)
def test_bad_inputs_raise_input_validation_error(client: dream.Client, kwargs: dict, match: str) -> None:
    with pytest.raises(dream.InputValidationError, match=match):
        client.models.get("shift-test").predict(**kwargs)


def test_chunk_rule_uses_the_spec(client: dream.Client) -> None:
    with pytest.raises(dream.InputValidationError, match=r"T=6 is not a multiple of the model's chunk_size=4"):
        client.models.get("shift-chunk4").predict(start_frame=FRAME, actions=np.zeros((6, 2), np.float32))


def test_predict_batch(client: dream.Client) -> None:
    k3 = np.stack([ACTS, ACTS * 2, -ACTS])
    batch = client.models.get("shift-seeded").predict_batch(start_frame=FRAME, actions=k3, seed=4)
    assert batch.batch_size == 3 and len(batch) == 3 and batch.customer_id == "local"
    assert batch.cost_usd == pytest.approx(3 * 5 * 0.001)
    assert all(r.cost_usd == 0.0 and r.id == batch.request_id for r in batch)
    assert all(r.engine_wall_ms == batch.engine_wall_ms for r in batch)
    single = client.models.get("shift-seeded").predict(start_frame=FRAME, actions=k3[2], seed=4)
    np.testing.assert_array_equal(batch[2].frames, single.frames)
    for bad, match in [(ACTS, "3-D"), (np.zeros((0, 4, 2), np.float32), "K=0"), ([], "empty")]:
        with pytest.raises(dream.InputValidationError, match=match):
            client.models.get("shift-test").predict_batch(start_frame=FRAME, actions=bad)
    with pytest.raises(dream.InputValidationError, match="requires both"):
        client.models.get("shift-test").predict_batch(actions=k3)


def test_same_inputs_same_bytes_and_seed_matters(client: dream.Client) -> None:
    h = client.models.get("shift-seeded")
    a = h.predict(start_frame=FRAME, actions=ACTS, seed=1)
    b = h.predict(start_frame=FRAME, actions=ACTS, seed=1)
    c = h.predict(start_frame=FRAME, actions=ACTS, seed=2)
    assert bytes(a.mp4_bytes) == bytes(b.mp4_bytes) != bytes(c.mp4_bytes)


def test_ignored_knobs_warn_on_deterministic_specs(client: dream.Client) -> None:
    h = client.models.get("shift-test")
    with pytest.warns(UserWarning, match="seed=3 has no effect") as caught:
        h.predict(start_frame=FRAME, actions=ACTS, seed=3)
    assert caught[0].filename == __file__  # points at the caller's line, not inside dream
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h.predict(start_frame=FRAME, actions=ACTS)


def test_idempotency_key_returns_the_stored_result(client: dream.Client) -> None:
    from tests.shift_runner import ShiftRunner

    h = client.models.get("shift-test")
    first = h.predict(start_frame=FRAME, actions=ACTS, idempotency_key="k1")
    n = len(ShiftRunner.calls)
    again = h.predict(start_frame=FRAME, actions=ACTS, idempotency_key="k1")
    assert again.id == first.id and len(ShiftRunner.calls) == n


def test_byte_level_client_predict(client: dream.Client, tmp_path: Path) -> None:
    pr = client.predict(frame_bytes=png(FRAME), actions_bytes=npy(ACTS))
    assert pr.request_id.startswith("req_") and pr.frames.shape == (5, 16, 16, 3)
    assert pr.customer_id == "local" and pr.mp4_bytes[4:8] == b"ftyp"
    assert pr.estimated_charge_usd == pytest.approx(0.005)
    with pytest.raises(ValueError, match="frame_bytes= or frame_path="):
        client.predict(actions_bytes=npy(ACTS))
    with pytest.raises(dream.InputValidationError, match="pickled"):
        client.predict(frame_bytes=png(FRAME), actions_bytes=b"\x80\x04\x95 pickle")
    br = client.predict_batch(frame_bytes=png(FRAME), actions_bytes_list=[npy(ACTS), npy(-ACTS)])
    assert br.batch_size == 2 and [r.estimated_charge_usd for r in br.rollouts] == [0.0, 0.0]
    with pytest.raises(ValueError, match="actions_bytes_list"):
        client.predict_batch(frame_bytes=png(FRAME))


def test_billing_needs_a_server(client: dream.Client) -> None:
    with pytest.raises(dream.ServerError, match="no credits ledger"):
        client.billing.balance()
    with pytest.raises(ValueError, match="between"):
        client.billing.topup(amount_usd=1.0)


def test_status_specs_healthz(client: dream.Client) -> None:
    client.models.get("shift-test").predict(start_frame=FRAME, actions=ACTS)
    status = client.status()
    assert status["latency_24h"]["count"] >= 1 and status["latency_24h"]["p50_ms"] > 0
    specs = client.specs()
    assert {s["slug"] for s in specs["specs"]} >= {"shift-test"} and specs["default_spec"] == "shift-test"
    assert client.healthz()["ok"] is True


def test_with_options_shares_the_engine(client: dream.Client) -> None:
    other = client.with_options(timeout_s=5.0)
    assert other.engine is client.engine and other.timeout_s == 5.0
    with pytest.raises(TypeError, match="bogus"):
        client.with_options(bogus=1)


async def test_async_client_matches_the_sync_one() -> None:
    engine = Engine(["shift-seeded"])
    async with dream.AsyncClient(engine=engine) as aclient:
        h = await aclient.models.get("shift-seeded")
        assert repr(h) == "AsyncModelHandle(slug='shift-seeded', active=True)"
        r = await h.predict(start_frame=FRAME, actions=ACTS, seed=9)
        batch = await h.predict_batch(start_frame=FRAME, actions=ACTS[None], seed=9)
    sync = dream.Client(engine=engine).models.get("shift-seeded").predict(start_frame=FRAME, actions=ACTS, seed=9)
    assert bytes(r.mp4_bytes) == bytes(sync.mp4_bytes) == bytes(batch[0].mp4_bytes)
