"""mp4 encoding: decodable, T+1 frames, byte-identical across runs and processes."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest

from dream.engine.video import decode_mp4, encode_mp4, mp4_frame_count

FRAMES = np.random.default_rng(0).integers(0, 256, (13, 32, 48, 3), dtype=np.uint8)
SMOOTH = np.stack([np.full((32, 48, 3), 10 * i, np.uint8) for i in range(13)])


def test_round_trip_keeps_count_size_and_content() -> None:
    data = encode_mp4(SMOOTH, fps=10)
    out = decode_mp4(data)
    assert out.shape == SMOOTH.shape and mp4_frame_count(data) == 13
    assert np.abs(out.astype(int) - SMOOTH.astype(int)).max() <= 3  # near-lossless on flat colour


def test_same_frames_same_bytes_in_this_process() -> None:
    assert encode_mp4(FRAMES, 10) == encode_mp4(FRAMES, 10)


def test_same_frames_same_bytes_in_a_fresh_process() -> None:
    code = (
        "import hashlib, numpy as np; from dream.engine.video import encode_mp4; "
        "f = np.random.default_rng(0).integers(0, 256, (13, 32, 48, 3), dtype=np.uint8); "
        "print(hashlib.sha256(encode_mp4(f, 10)).hexdigest())"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert other == hashlib.sha256(encode_mp4(FRAMES, 10)).hexdigest()


def test_no_timestamps_or_muxer_version_in_the_file() -> None:
    data = encode_mp4(SMOOTH, 10)
    assert b"Lavf" not in data  # bitexact muxing: no libavformat version string


def test_odd_sizes_are_padded() -> None:
    odd = np.zeros((3, 15, 17, 3), np.uint8)
    assert decode_mp4(encode_mp4(odd, 10)).shape == (3, 16, 18, 3)


def test_fps_is_written() -> None:
    import io

    import av

    with av.open(io.BytesIO(encode_mp4(SMOOTH, 10))) as c:
        assert c.streams.video[0].average_rate == 10


@pytest.mark.parametrize("bad", [np.zeros((3, 8, 8), np.uint8), np.zeros((2, 8, 8, 3), np.float32), np.zeros((0, 8, 8, 3), np.uint8)])
def test_bad_frames_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        encode_mp4(bad, 10)


def _encode_all_at_once(frames: np.ndarray, fps: int) -> bytes:
    """The encoder as it was before chunked writing (one call over every frame), kept as the reference."""
    import io

    import av

    from dream.engine import video

    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    container = av.open(buf, mode="w", format="mp4", options={"fflags": "+bitexact"})
    try:
        stream = container.add_stream(video.CODEC, rate=fps, options=dict(video.X264_OPTIONS))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = video.PIX_FMT
        stream.thread_count = video.X264_THREADS
        stream.thread_type = "SLICE"
        stream.codec_context.flags |= int(av.codec.context.Flags.bitexact)
        for i in range(t):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()
    return buf.getvalue()


@pytest.mark.parametrize("chunk", [1, 4, 5, 13])
@pytest.mark.parametrize("frames", [FRAMES, FRAMES[:, :31, :47]], ids=["even", "odd-size"])
def test_chunked_writing_gives_the_same_bytes_as_one_call(frames: np.ndarray, chunk: int) -> None:
    from dream.engine.video import Mp4Writer

    writer = Mp4Writer(10)
    for i in range(0, len(frames), chunk):
        writer.write(frames[i : i + chunk])
    data = writer.finish()
    assert data == _encode_all_at_once(frames, 10) == encode_mp4(frames, 10)


def test_a_writer_refuses_a_size_change_and_an_empty_video() -> None:
    from dream.engine.video import Mp4Writer

    writer = Mp4Writer(10)
    writer.write(FRAMES[:2])
    with pytest.raises(ValueError, match="frames are 16x48, but this video is 32x48"):
        writer.write(FRAMES[:1, :16])
    writer.close()
    with pytest.raises(ValueError, match="at least one frame"):
        Mp4Writer(10).finish()
