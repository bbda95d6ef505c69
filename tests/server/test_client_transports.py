"""Our client over both transports: the same objects and errors from the embedded engine and
from a real ``dream serve`` (uvicorn subprocess), sync and async."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

import dream
from dream.errors import (
    AuthError,
    InputValidationError,
    InsufficientCreditsError,
    ModelNotFoundError,
    PayloadTooLargeError,
)
from dream.resources.sessions import SessionError
from tests.server.conftest import SPEC, SPEC_RES, actions_array, frame_array, npy, png


@pytest.fixture(scope="module")
def engine():
    import torch

    from dream.engine.engine import Engine

    threads = torch.get_num_threads()
    specs = [SPEC, "tiny-16"]
    eng = Engine(specs, threads=1)  # the live server also runs with one torch thread: bit-identical frames
    for s in specs:
        eng.load(s)
    yield eng
    torch.set_num_threads(threads)  # the engine set it process-wide


@pytest.fixture(params=["local", "http"])
def client(request, engine, live_server):
    if request.param == "local":
        c = dream.Client(engine=engine)
    else:
        c = dream.Client(base_url=live_server.url, api_key=live_server.keys["rich"])
    yield c
    c.close()


@pytest.fixture
def both(engine, live_server):
    local = dream.Client(engine=engine)
    http = dream.Client(base_url=live_server.url, api_key=live_server.keys["rich"])
    yield local, http
    http.close()


def test_models_look_the_same(both) -> None:
    local, http = both
    lm, hm = local.models.get(SPEC), http.models.get(SPEC)
    assert (lm.slug, lm.active, lm.action_dim, lm.resolution, lm.chunk_size) == (
        hm.slug, hm.active, hm.action_dim, hm.resolution, hm.chunk_size)
    assert hm.active is True and SPEC in [m.slug for m in http.models.list()]
    assert hm.spec.price_per_frame_usd == lm.spec.price_per_frame_usd


@pytest.mark.filterwarnings("ignore:.*has no effect:UserWarning")
def test_predict_gives_the_same_rollout_on_both_transports(both) -> None:
    local, http = both
    frame, acts = frame_array(seed=1), actions_array(6, seed=1)
    lr = local.models.get(SPEC).predict(frame, acts, seed=3)
    hr = http.models.get(SPEC).predict(frame, acts, seed=3)
    assert type(lr) is type(hr) is dream.Rollout
    for field in ("model", "num_frames", "resolution", "seed"):
        assert getattr(lr, field) == getattr(hr, field), field
    assert hr.num_frames == 7 and hr.resolution == (SPEC_RES, SPEC_RES)
    assert hr.cost_usd == pytest.approx(lr.cost_usd) and hr.cost_usd > 0
    assert hr.id.startswith("rollout_") and hr.video_url.startswith("http") and hr.customer_id.startswith("cus_")
    assert bytes(hr.mp4_bytes) == bytes(lr.mp4_bytes)  # downloaded lazily from the signed video_url
    assert np.array_equal(hr.video(), lr.video())


def test_predict_batch_and_byte_level_calls_match(both) -> None:
    local, http = both
    frame, acts = frame_array(seed=2), np.stack([actions_array(4, seed=s) for s in range(3)])
    lb = local.models.get(SPEC).predict_batch(start_frame=frame, actions=acts)
    hb = http.models.get(SPEC).predict_batch(start_frame=frame, actions=acts)
    assert type(hb) is dream.BatchRollout and len(hb) == hb.batch_size == 3
    assert hb.cost_usd == pytest.approx(lb.cost_usd) and [r.cost_usd for r in hb] == [0.0] * 3
    assert [bytes(r.mp4_bytes) for r in hb] == [bytes(r.mp4_bytes) for r in lb]
    assert [r.num_frames for r in hb] == [5, 5, 5] and hb[0].model == SPEC
    lp = local.predict(frame_bytes=png(frame), actions_bytes=npy(acts[0]))
    hp = http.predict(frame_bytes=png(frame), actions_bytes=npy(acts[0]))
    assert type(hp).__mro__[1] is dream.PredictResponse or type(hp) is dream.PredictResponse
    assert hp.mp4_bytes == lp.mp4_bytes and hp.frames.shape == lp.frames.shape == (5, SPEC_RES, SPEC_RES, 3)
    assert hp.request_id.startswith("req_") and hp.estimated_charge_usd == pytest.approx(lp.estimated_charge_usd)
    lbb = local.predict_batch(frame_bytes=png(frame), actions_bytes_list=[npy(a) for a in acts[:2]])
    hbb = http.predict_batch(frame_bytes=png(frame), actions_bytes_list=[npy(a) for a in acts[:2]])
    assert [r.mp4_bytes for r in hbb.rollouts] == [r.mp4_bytes for r in lbb.rollouts] and hbb.batch_size == 2


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda c: c.models.get("no-such-model"), ModelNotFoundError, "no-such-model"),
        (lambda c: c.predict(frame_bytes=b"not an image", actions_bytes=npy(actions_array())), InputValidationError,
         "not a readable image"),
        (lambda c: c.predict(frame_bytes=png(frame_array()), actions_bytes=npy(np.full((4, 2), np.nan, np.float32))),
         InputValidationError, "non-finite"),
        (lambda c: c.models.get(SPEC).predict(frame_array(), np.zeros((4, 7), np.float32)), InputValidationError,
         "action_dim mismatch"),
        (lambda c: c.predict(frame_bytes=png(frame_array()), actions_bytes=npy(actions_array()), num_steps=-2),
         InputValidationError, "num_steps"),
    ],
)
def test_bad_inputs_raise_the_same_class_on_both_transports(client, call, exc, match) -> None:
    with pytest.raises(exc, match=match):
        call(client)


def test_sessions_stream_the_same_frames_on_both_transports(both) -> None:
    local, http = both
    frame, a1, a2 = frame_array(seed=4), actions_array(10, seed=4), actions_array(3, seed=5)
    out = []
    for c in (local, http):
        with c.sessions.create(model=SPEC, initial_frame=frame) as s:
            first = list(s.submit_actions(a1))
            second = list(s.submit_actions(a2))
            assert s.envelope["frames_streamed"] == 14 and s.envelope["rollouts"] == 2
        assert s.closed and s.state == "closed"
        out.append((first, second))
    (lf, ls), (hf, hs) = out
    assert len(hf) == 11 and len(hs) == 3
    assert all(np.array_equal(a, b) for a, b in zip(lf + ls, hf + hs, strict=True))
    with local.sessions.create(model=SPEC, initial_frame=frame) as s, pytest.raises(InputValidationError):
        next(s.submit_actions(np.zeros((2, 9), np.float32)))


def test_sessions_carry_the_model_state_so_submits_equal_one_predict(both) -> None:
    """A session steps the model's rollout forward (agent velocity, block motion): its frames are one
    predict of every action submitted so far, not a new rollout from the last frame at each chunk."""
    from dream.examples.pusht import pusht_episode

    ep = pusht_episode(0)  # the agent pushes the block: re-predicting from a frame would lose its velocity
    whole = both[0].engine.predict(ep.start_frame, ep.actions[:30], spec=SPEC).frames[0]  # raw frames, not the mp4's
    for c in both:
        with c.sessions.create(model=SPEC, initial_frame=ep.start_frame) as s:
            streamed = list(s.submit_actions(ep.actions[:13])) + list(s.submit_actions(ep.actions[13:30]))
        np.testing.assert_array_equal(np.stack(streamed), whole)


def test_predict_many_over_http_sends_the_spec_and_never_charges_a_row_twice(live_server, tmp_path: Path) -> None:
    from dream.io import RolloutSink, frames_from_dir

    src_dir = tmp_path / "rows"
    src_dir.mkdir()
    for i in range(3):
        (src_dir / f"ep{i}.png").write_bytes(png(frame_array(16, seed=i)))
        (src_dir / f"ep{i}.npy").write_bytes(npy(actions_array(4, seed=i)))
    c = dream.Client(base_url=live_server.url, api_key=live_server.keys["rich"])
    before = c.billing.balance().balance_mils
    res = c.predict_many(frames_from_dir(src_dir), RolloutSink.dir(tmp_path / "out"), spec="tiny-16", progress=False)
    assert res.ok == 3 and res.failed == 0
    spent = before - c.billing.balance().balance_mils
    assert spent == 3 * 5  # tiny-16 (sent as the model field), not the server default
    # A fresh run into a fresh sink re-sends the same rows with the same idempotency keys: replayed, not charged.
    res2 = c.predict_many(frames_from_dir(src_dir), RolloutSink.dir(tmp_path / "out2"), spec="tiny-16", progress=False,
                          resume=False)
    assert res2.ok == 3 and c.billing.balance().balance_mils == before - spent
    assert sorted(p.name for p in (tmp_path / "out2" / "videos").iterdir()) == ["ep0.mp4", "ep1.mp4", "ep2.mp4"]


def test_http_only_errors_carry_status_request_id_and_mils(live_server) -> None:
    bad = dream.Client(base_url=live_server.url, api_key="dre_not_a_key")
    with pytest.raises(AuthError) as ei:
        bad.billing.balance()
    assert ei.value.status_code == 401 and ei.value.request_id.startswith("req_")
    revoked = dream.Client(base_url=live_server.url, api_key=live_server.keys["revoked"])
    with pytest.raises(AuthError) as ei:
        revoked.models.get(SPEC)
    assert ei.value.status_code == 403
    poor = dream.Client(base_url=live_server.url, api_key=live_server.keys["poor"])
    with pytest.raises(InsufficientCreditsError) as ei:
        poor.models.get("tiny-16").predict(frame_array(16), actions_array(4))
    assert ei.value.balance_mils == 3 and ei.value.requested_mils == 5 and ei.value.status_code == 402


def test_billing_and_info_over_http(live_server) -> None:
    c = dream.Client(base_url=live_server.url, api_key=live_server.keys["rich"])
    bal = c.billing.balance()
    assert bal.customer_id.startswith("cus_") and bal.balance_mils > 0
    txns = c.billing.transactions(limit=500)
    assert txns and txns[-1].kind == "credit" and len(txns) <= 200
    assert c.healthz() == {"ok": True}
    assert c.status()["ready"] is True
    est = c.estimate_cost(_Rows(2), spec=SPEC)
    assert est.total_frames == 2 * 5 and est.price_per_frame_usd == c.models.get(SPEC).spec.price_per_frame_usd


class _Rows(dream.io.IterableSource):
    def __init__(self, n: int) -> None:
        self.rows_hint = n

    def __iter__(self):
        for i in range(self.rows_hint):
            yield dream.io.SourceRow(f"r{i}", png(frame_array()), npy(actions_array(4)))


def test_async_client_over_http_matches_the_sync_one(live_server, engine) -> None:
    frame, acts = frame_array(seed=6), actions_array(4, seed=6)
    expected = dream.Client(engine=engine).models.get(SPEC).predict(frame, acts)

    async def main() -> None:
        async with dream.AsyncClient(base_url=live_server.url, api_key=live_server.keys["rich"]) as ac:
            model = await ac.models.get(SPEC)
            r = await model.predict(frame, acts)
            assert isinstance(r, dream.Rollout) and bytes(r.mp4_bytes) == bytes(expected.mp4_bytes)
            b = await model.predict_batch(start_frame=frame, actions=acts[None])
            assert len(b) == 1
            with pytest.raises(InputValidationError):
                await ac.predict(frame_bytes=b"nope", actions_bytes=npy(acts))
            # The 0.5.0 async session cannot connect (sdk-surface §20.3); ours does.
            s = await ac.sessions.create(model=SPEC, initial_frame=frame)
            frames = [f async for f in s.submit_actions(acts)]
            await s.close()
            assert len(frames) == 5 and s.state == "closed"
            assert (await ac.billing.balance()).balance_mils > 0

    asyncio.run(main())


def test_session_errors_are_session_errors(live_server) -> None:
    c = dream.Client(base_url=live_server.url, api_key=live_server.keys["poor"])
    with c.sessions.create(model="tiny-16", initial_frame=frame_array(16)) as s, pytest.raises(SessionError) as ei:
        list(s.submit_actions(actions_array(8)))
    assert ei.value.code == "insufficient_credits" and isinstance(ei.value, RuntimeError)
    rich = dream.Client(base_url=live_server.url, api_key=live_server.keys["rich"])
    with pytest.raises(ModelNotFoundError):
        rich.sessions.create(model="nope", initial_frame=frame_array(16))


def test_an_oversized_upload_over_a_real_socket_is_a_413_not_a_broken_pipe(live_server) -> None:
    c = dream.Client(base_url=live_server.url, api_key=live_server.keys["rich"])
    big = npy(np.zeros((600_000, 2), np.float32))  # 4.8 MB > the server's 4 MiB limit
    with pytest.raises(PayloadTooLargeError) as ei:
        c.predict(frame_bytes=png(frame_array()), actions_bytes=big)
    assert ei.value.status_code == 413 and ei.value.request_id.startswith("req_")
    assert c.healthz() == {"ok": True}  # the server is fine afterwards


def test_async_sessions_on_the_embedded_engine(engine) -> None:
    frame, acts = frame_array(seed=7), actions_array(9, seed=7)
    with dream.Client(engine=engine).sessions.create(model=SPEC, initial_frame=frame) as s:
        expected = list(s.submit_actions(acts))

    async def main() -> list[np.ndarray]:
        async with dream.AsyncClient(engine=engine) as ac:
            async with await ac.sessions.create(model=SPEC, initial_frame=frame) as s:
                frames = [f async for f in s.submit_actions(acts)]
                assert s.envelope["frames_streamed"] == 10 and s.envelope["billing"]["debited_mils"] == 0
            assert s.closed
            with pytest.raises(ModelNotFoundError):
                await ac.sessions.create(model="nope", initial_frame=frame)
            return frames

    got = asyncio.run(main())
    assert len(got) == 10 and all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_the_request_id_is_in_every_log_line_of_its_request(live_server) -> None:
    c = dream.Client(base_url=live_server.url, api_key=live_server.keys["rich"])
    pr = c.predict(frame_bytes=png(frame_array(16, seed=8)), actions_bytes=npy(actions_array(4, seed=8)))
    lines = [line for line in live_server.log().splitlines() if f"[{pr.request_id}]" in line]
    assert any("POST /v1/predict" in line for line in lines)  # uvicorn's access log
    assert any("dream.server.rollouts" in line and "charged_mils" in line for line in lines)  # ours
