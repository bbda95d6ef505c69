"""The server as a shared service: frame and request budgets, decode order and bounds."""

from __future__ import annotations

import io
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

import dream.inputs
from dream.errors import InputValidationError
from dream.inputs import read_image_header
from tests.server import tiny
from tests.server.conftest import actions_array, frame_array, npy, png, predict_files


def _png_header_only(width: int, height: int, depth: int = 16, colour: int = 0) -> bytes:
    """A PNG signature and IHDR declaring `width` x `height`, then junk: only a decoder finds out."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([depth, colour, 0, 0, 0])
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big")
        + b"\x00" * 64
    )


class DecodeSpy:
    """Counts calls of `decode_image_bytes` and the most that ran at once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, hold_s: float = 0.0) -> None:
        self.calls = 0
        self.running = 0
        self.peak = 0
        self.hold_s = hold_s
        self._lock = threading.Lock()
        real = dream.inputs.decode_image_bytes

        def spy(data, *, what="start_frame"):
            with self._lock:
                self.calls += 1
                self.running += 1
                self.peak = max(self.peak, self.running)
            try:
                time.sleep(self.hold_s)
                return real(data, what=what)
            finally:
                with self._lock:
                    self.running -= 1

        monkeypatch.setattr(dream.inputs, "decode_image_bytes", spy)


# --------------------------------------------------------------------------- image headers


@pytest.mark.parametrize(
    ("mode", "fmt", "depth", "channels"),
    [("RGB", "PNG", 8, 3), ("RGBA", "PNG", 8, 4), ("L", "PNG", 8, 1), ("I;16", "PNG", 16, 1), ("P", "PNG", 8, 1),
     ("RGB", "JPEG", 8, 3), ("L", "JPEG", 8, 1), ("CMYK", "JPEG", 8, 4)],
)
def test_image_header_is_read_without_decoding(mode: str, fmt: str, depth: int, channels: int) -> None:
    img = Image.fromarray(frame_array(16)).resize((37, 21)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, progressive=(fmt == "JPEG"))
    header = read_image_header(buf.getvalue())
    assert (header.format, header.width, header.height, header.bit_depth, header.channels) == (fmt, 37, 21, depth, channels)


def test_image_header_refuses_other_formats_and_broken_headers() -> None:
    img = Image.fromarray(frame_array(16))
    for fmt in ("GIF", "TIFF", "BMP"):
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        with pytest.raises(InputValidationError, match="not PNG or JPEG"):
            read_image_header(buf.getvalue(), what="frame")
    with pytest.raises(InputValidationError, match="colour type 2 with bit depth 4"):
        read_image_header(_png_header_only(16, 16, depth=4, colour=2))
    with pytest.raises(InputValidationError, match="declares no pixels"):
        read_image_header(_png_header_only(0, 16))
    with pytest.raises(InputValidationError, match="JPEG without a frame header"):
        read_image_header(b"\xff\xd8\xff\xe0\x00\x04ab\xff\xd9")


# --------------------------------------------------------------------------- memory before money


def test_a_huge_16_bit_frame_is_refused_from_its_header_naming_the_limit(make_client, monkeypatch) -> None:
    # The attack: 6300 x 6300 at 16 bits is under the old 40 M-pixel cap.
    h = make_client()
    key = h.key()
    spy = DecodeSpy(monkeypatch)
    r = h.client.post("/v1/predict", files=predict_files(frame=_png_header_only(6300, 6300)), headers=h.auth(key))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "6300x6300" in detail and "16 bits" in detail and "max_frame_pixels" in detail and "tiny-16" in detail
    assert spy.calls == 0


def test_the_frame_budget_follows_the_spec_and_the_setting(make_client) -> None:
    h = make_client()
    spec = h.services.engine.spec("tiny-16")
    assert h.services.rollouts.max_frame_pixels(spec) == 1920 * 1080  # tiny: the Full-HD floor
    h = make_client(max_frame_pixels=40 * 40)
    key = h.key()
    big = png(np.asarray(Image.fromarray(frame_array(16)).resize((48, 48))))
    r = h.client.post("/v1/predict", files=predict_files(frame=big), headers=h.auth(key))
    assert r.status_code == 422 and "48x48" in r.json()["detail"] and "max_frame_pixels" in r.json()["detail"]
    ok = png(np.asarray(Image.fromarray(frame_array(16)).resize((40, 40))))
    assert h.client.post("/v1/predict", files=predict_files(frame=ok), headers=h.auth(key)).status_code == 200


def test_no_frame_is_decoded_for_a_caller_without_credit(make_client, monkeypatch) -> None:
    h = make_client()
    key = h.key(credits_mils=0)
    spy = DecodeSpy(monkeypatch)
    r = h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key))
    assert r.status_code == 402
    r = h.client.post(
        "/v1/predict/batch", files=[("frame", ("f.png", png(frame_array(16)), "image/png")),
                                    ("actions", ("a.npy", npy(actions_array()), "application/octet-stream"))],
        headers=h.auth(key),
    )
    assert r.status_code == 402
    assert spy.calls == 0


def test_no_frame_is_decoded_over_the_concurrency_cap(make_client, monkeypatch) -> None:
    h = make_client(max_concurrent_rollouts=1)
    key = h.key()
    spy = DecodeSpy(monkeypatch)
    principal = h.services.ledger.authenticate(key)
    with h.services.limiter.rollout_slot(principal.limiter_key):
        r = h.client.post("/v1/predict", files=predict_files(), headers=h.auth(key))
    assert r.status_code == 429 and spy.calls == 0


def test_decodes_run_a_few_at_a_time_server_wide(make_client, monkeypatch) -> None:
    h = make_client(max_concurrent_decodes=2)
    keys = [h.key(f"c{i}") for i in range(6)]
    spy = DecodeSpy(monkeypatch, hold_s=0.2)

    def post(i: int) -> int:
        files = predict_files(frame=png(frame_array(16, seed=i)))
        return h.client.post("/v1/predict", files=files, headers=h.auth(keys[i])).status_code

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(post, range(6)))
    assert codes == [200] * 6
    assert spy.calls == 6 and spy.peak <= 2


# --------------------------------------------------------------------------- request budgets


def test_frames_per_request_are_capped_with_413_naming_the_limit(make_client) -> None:
    h = make_client(max_request_frames=20)
    key = h.key()
    tiny.TinyRunner.calls.clear()
    batch = [("frame", ("f.png", png(frame_array(16)), "image/png"))] + [
        ("actions", (f"a{k}.npy", npy(actions_array(4, seed=k)), "application/octet-stream")) for k in range(5)
    ]
    r = h.client.post("/v1/predict/batch", files=batch, headers=h.auth(key))
    assert r.status_code == 413
    assert r.headers["x-dreamengine-error-code"] == "request_too_large"
    assert "K=5" in r.json()["detail"] and "25 frames" in r.json()["detail"] and "max_request_frames is 20" in r.json()["detail"]
    r = h.client.post("/v1/predict", files=predict_files(actions=npy(actions_array(20))), headers=h.auth(key))
    assert r.status_code == 413 and "21 frames" in r.json()["detail"]
    assert h.client.post("/v1/predict", files=predict_files(actions=npy(actions_array(19))), headers=h.auth(key)).status_code == 200
    assert len(tiny.TinyRunner.calls) == 1


# --------------------------------------------------------------------------- fair scheduling


def test_engine_turns_go_round_robin_across_customers() -> None:
    import asyncio

    from dream.server.services.scheduler import FairScheduler

    async def main() -> list[str]:
        sched = FairScheduler()
        order: list[str] = []
        hold = asyncio.Event()

        async def work(customer: str, label: str) -> None:
            async with sched.turn(customer):
                order.append(label)
                if label == "x":
                    await hold.wait()

        first = asyncio.create_task(work("x", "x"))
        await asyncio.sleep(0)
        tasks = [asyncio.create_task(work(c, c + n)) for c, n in
                 [("a", "1"), ("a", "2"), ("a", "3"), ("b", "1"), ("b", "2"), ("c", "1")]]
        doomed = asyncio.create_task(work("d", "1"))
        await asyncio.sleep(0)
        doomed.cancel()  # a waiter that gives up loses its place, nothing else
        await asyncio.sleep(0)
        assert sched.waiting() == 6
        hold.set()
        await asyncio.gather(first, *tasks)
        assert not sched.busy and sched.waiting() == 0
        return order

    assert asyncio.run(main()) == ["x", "a1", "b1", "c1", "a2", "b2", "a3"]


def test_a_long_rollout_yields_its_turn_to_another_customer_between_chunks(make_client) -> None:
    h = make_client(stream_min_frames=8, stream_chunk_frames=4)
    long_key, short_key = h.key("long"), h.key("short")
    cust = {h.services.ledger.authenticate(k).customer_id: name for k, name in [(long_key, "L"), (short_key, "S")]}
    sched = h.services.scheduler
    short_status: list[int] = []

    def post_short() -> None:
        r = h.client.post("/v1/predict", files=predict_files(), headers=h.auth(short_key))
        short_status.append(r.status_code)

    def on_chunk(i: int) -> None:
        if i == 2:  # mid-rollout: the other customer's request arrives and queues for a turn
            threading.Thread(target=post_short, daemon=True).start()
            deadline = time.monotonic() + 30
            while sched.waiting() == 0 and time.monotonic() < deadline:
                time.sleep(0.01)

    tiny.TinyRunner.on_chunk = on_chunk
    try:
        r = h.client.post("/v1/predict", files=predict_files(actions=npy(actions_array(40))), headers=h.auth(long_key))
    finally:
        tiny.TinyRunner.on_chunk = None
    assert r.status_code == 200 and r.headers["x-dreamengine-frames"] == "41"
    deadline = time.monotonic() + 30
    while not short_status and time.monotonic() < deadline:
        time.sleep(0.01)
    assert short_status == [200]
    turns = "".join(cust[c] for c in sched.granted)
    # frame 0, then chunks 0, 1, 2 (during which S arrived), then S's turn, then the rest of L's
    assert turns == "LLLL" + "S" + "L" * 7, turns  # 1 + 40 / 4 turns of L in all


def test_a_streamed_rollout_is_byte_identical_to_one_computed_at_once(make_client) -> None:
    at_once = make_client()
    streamed = make_client(stream_min_frames=1, stream_chunk_frames=3)
    files = predict_files(actions=npy(actions_array(11)))
    a = at_once.client.post("/v1/predict", files=files, headers=at_once.auth(at_once.key()))
    b = streamed.client.post("/v1/predict", files=files, headers=streamed.auth(streamed.key()))
    assert a.status_code == b.status_code == 200
    assert a.content == b.content and len(streamed.services.scheduler.granted) == 1 + 4  # frame 0 + 11 frames in 3s


def test_a_request_past_its_wall_time_is_stopped_and_refunded(make_client) -> None:
    h = make_client(stream_min_frames=1, stream_chunk_frames=2, max_request_wall_s=0.05)
    key = h.key(credits_mils=1000)
    tiny.TinyRunner.on_chunk = lambda i: time.sleep(0.1) if i == 0 else None
    try:
        r = h.client.post("/v1/predict", files=predict_files(actions=npy(actions_array(8))), headers=h.auth(key))
    finally:
        tiny.TinyRunner.on_chunk = None
    assert r.status_code == 413 and "max_request_wall_s" in r.json()["detail"] and "refunded" in r.json()["detail"]
    balance = h.client.get("/v1/billing/balance", headers=h.auth(key)).json()["balance_mils"]
    assert balance == 1000


def test_a_session_for_a_caller_without_credit_is_refused_before_its_frame_is_decoded(make_client, monkeypatch) -> None:
    """Opening a session checked only the header, then decoded the frame outside the
    bounded decodes and before any credit check."""
    h = make_client(max_concurrent_decodes=1)
    spy = DecodeSpy(monkeypatch)
    files = {"initial_frame": ("f.png", png(frame_array(16)), "image/png")}
    broke = h.key("broke", credits_mils=0)
    r = h.client.post("/v1/sessions", data={"model": "tiny-16"}, files=files, headers=h.auth(broke))
    assert r.status_code == 402 and "at least one frame" in r.json()["detail"]["message"]
    assert spy.calls == 0
    r = h.client.post("/v1/sessions", data={"model": "tiny-16"}, files=files, headers=h.auth(h.key("paying")))
    assert r.status_code == 200 and spy.calls == 1 and spy.peak == 1
