"""Deterministic mp4 encoding and decoding: the only module that imports PyAV.

Same frames in → same mp4 bytes out, on the same machine and library versions. What
makes it so: libx264 with fixed options and a fixed thread count (x264's output
depends on its thread count), FFmpeg's bitexact flags on the muxer and the encoder (no
encoder version string or creation time in the file), and an explicit time base.
H.264 yuv420p is what every player and `mediapy.read_video` decode.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# One place for every encoder setting; changing any of them changes the bytes.
CODEC = "libx264"
PIX_FMT = "yuv420p"
X264_THREADS = 1
X264_OPTIONS = {
    "crf": "12",  # near-lossless: 96x96 objects are only a few pixels wide
    "preset": "fast",
    "tune": "zerolatency",  # no lookahead or B-frames: frame-by-frame encode, smaller latency
}


def _av():
    try:
        import av
    except ImportError as exc:
        raise ImportError(
            "encoding and decoding mp4 needs PyAV: pip install 'dream-engine[decode]' (or '[torch]')"
        ) from exc
    return av


def encode_mp4(frames: np.ndarray, fps: int) -> bytes:
    """Encode uint8 (T, H, W, 3) RGB frames as an H.264 mp4 at `fps` frames per second."""
    import numpy as np

    av = _av()
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"encode_mp4 expects uint8 (T, H, W, 3); got {frames.dtype} {tuple(frames.shape)}")
    t, h, w, _ = frames.shape
    if t == 0:
        raise ValueError("encode_mp4 needs at least one frame")
    if h % 2 or w % 2:
        # yuv420p needs even sizes: repeat the last row/column.
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    container = av.open(buf, mode="w", format="mp4", options={"fflags": "+bitexact"})
    try:
        stream = container.add_stream(CODEC, rate=fps, options=dict(X264_OPTIONS))
        stream.width = frames.shape[2]
        stream.height = frames.shape[1]
        stream.pix_fmt = PIX_FMT
        stream.thread_count = X264_THREADS
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


def decode_mp4(data: bytes) -> np.ndarray:
    """Decode an mp4 (any codec FFmpeg reads) into uint8 (T, H, W, 3) RGB frames."""
    import numpy as np

    av = _av()
    with av.open(io.BytesIO(data), mode="r") as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        return np.zeros((0, 0, 0, 3), np.uint8)
    return np.stack(frames)


def mp4_frame_count(data: bytes) -> int:
    """Number of video frames in an mp4, decoding them (exact, not the header's estimate)."""
    av = _av()
    with av.open(io.BytesIO(data), mode="r") as container:
        return sum(1 for _ in container.decode(video=0))
