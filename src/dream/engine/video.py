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


class Mp4Writer:
    """An H.264 mp4 written chunk by chunk: memory holds one chunk of frames, not the video.

    ``write`` takes uint8 (n, H, W, 3) RGB chunks of one size; ``finish`` flushes the
    encoder and returns the file. The bytes equal `encode_mp4` of all the chunks at once:
    libx264 here has no lookahead (zerolatency, one thread), so where chunks split the
    frames changes nothing.
    """

    def __init__(self, fps: int) -> None:
        self.fps = fps
        self._buf = io.BytesIO()
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None  # (H, W) as sent
        self.frames = 0

    def _open(self, h: int, w: int) -> None:
        av = _av()
        self._container = av.open(self._buf, mode="w", format="mp4", options={"fflags": "+bitexact"})
        stream = self._container.add_stream(CODEC, rate=self.fps, options=dict(X264_OPTIONS))
        stream.width = w + w % 2  # yuv420p needs even sizes: the last row/column is repeated
        stream.height = h + h % 2
        stream.pix_fmt = PIX_FMT
        stream.thread_count = X264_THREADS
        stream.thread_type = "SLICE"
        stream.codec_context.flags |= int(av.codec.context.Flags.bitexact)
        self._stream = stream
        self._size = (h, w)

    def write(self, frames: np.ndarray) -> None:
        """Encode uint8 (n, H, W, 3) frames after those already written."""
        import numpy as np

        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"Mp4Writer.write expects uint8 (n, H, W, 3); got {frames.dtype} {tuple(frames.shape)}")
        n, h, w, _ = frames.shape
        if self._size is None:
            if n == 0:
                return
            self._open(h, w)
        elif (h, w) != self._size:
            raise ValueError(f"Mp4Writer.write: frames are {h}x{w}, but this video is {self._size[0]}x{self._size[1]}")
        if h % 2 or w % 2:
            frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        av = _av()
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[i]), format="rgb24")
            frame.pts = self.frames
            self.frames += 1
            for packet in self._stream.encode(frame):
                self._container.mux(packet)

    def finish(self) -> bytes:
        """Flush the encoder, close the file and return its bytes."""
        if self._container is None:
            raise ValueError("an mp4 needs at least one frame")
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self.close()
        return self._buf.getvalue()

    def close(self) -> None:
        """Release the encoder (after `finish`, or to abandon the video)."""
        container, self._container = self._container, None
        if container is not None:
            container.close()


def encode_mp4(frames: np.ndarray, fps: int) -> bytes:
    """Encode uint8 (T, H, W, 3) RGB frames as an H.264 mp4 at `fps` frames per second."""
    import numpy as np

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"encode_mp4 expects uint8 (T, H, W, 3); got {frames.dtype} {tuple(frames.shape)}")
    if frames.shape[0] == 0:
        raise ValueError("encode_mp4 needs at least one frame")
    writer = Mp4Writer(fps)
    try:
        writer.write(frames)
        return writer.finish()
    finally:
        writer.close()


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
