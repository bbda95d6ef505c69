"""Images the page shows, made on the server from the mp4s and cached.

- thumbnail: the first and last frame side by side (PNG), what the grid shows per row;
- strip: every frame left to right (PNG), the row view's scrubber when the browser
  cannot play the mp4 (Chromium builds without H.264);
- per-frame PSNR of a rollout against its reference, with `dream.eval.metrics.psnr`
  (the one PSNR of `dream eval` and `dream qc`).
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["FrameCache", "frame_psnr", "strip_png", "thumbnail_png"]

THUMB_HEIGHT = 96
STRIP_HEIGHT = 96


def _decode(mp4: bytes) -> np.ndarray:
    from dream.engine.video import decode_mp4

    frames = decode_mp4(mp4)
    if len(frames) == 0:
        raise ValueError("the mp4 holds no video frames")
    return frames


def _png(img: np.ndarray, height: int) -> bytes:
    from PIL import Image

    pil = Image.fromarray(img)
    if pil.height > height:
        pil = pil.resize((max(1, round(pil.width * height / pil.height)), height), Image.BILINEAR)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def thumbnail_png(frames: np.ndarray) -> bytes:
    """First | last frame of (T, H, W, 3) uint8, 2 px apart, at most THUMB_HEIGHT high."""
    import numpy as np

    gap = np.full((frames.shape[1], 2, 3), 255, np.uint8)
    return _png(np.concatenate([frames[0], gap, frames[-1]], axis=1), THUMB_HEIGHT)


def strip_png(frames: np.ndarray) -> bytes:
    """All frames left to right, each scaled to STRIP_HEIGHT (the scrubber shows one at a time)."""
    import numpy as np

    return _png(np.concatenate(list(frames), axis=1), STRIP_HEIGHT)


def frame_psnr(frames: np.ndarray, reference: np.ndarray) -> list[float | None]:
    """PSNR (dB) per frame over the frames both videos have; None where they are identical.

    Raises ValueError naming both shapes when the frames differ in size.
    """
    from dream.eval.metrics import psnr

    n = min(len(frames), len(reference))
    if frames.shape[1:] != reference.shape[1:]:
        raise ValueError(f"the videos differ in frame size: {frames.shape[1:]} vs {reference.shape[1:]}")
    values = psnr(frames[:n], reference[:n])
    return [None if not math.isfinite(v) else round(float(v), 3) for v in values]


class FrameCache:
    """Decoded frames and rendered images, keyed by (video path, version), LRU-bounded.

    Decoding is the expensive step (a 49-frame mp4 is ~10 ms, a DreamDojo one far more),
    so the grid's thumbnails are made once per video and kept as PNG bytes.
    """

    def __init__(self, read: Callable[[str], bytes], version: Callable[[str], object], *,
                 max_images: int = 20_000, max_videos: int = 16) -> None:
        self._read = read
        self._version = version
        self._images: OrderedDict[tuple, bytes] = OrderedDict()
        self._videos: OrderedDict[tuple, Any] = OrderedDict()
        self._max_images = max_images
        self._max_videos = max_videos
        self._lock = threading.Lock()

    def frames(self, path: str) -> np.ndarray:
        key = (path, self._version(path))
        with self._lock:
            if key in self._videos:
                self._videos.move_to_end(key)
                return self._videos[key]
        frames = _decode(self._read(path))
        with self._lock:
            self._videos[key] = frames
            while len(self._videos) > self._max_videos:
                self._videos.popitem(last=False)
        return frames

    def image(self, kind: str, path: str) -> bytes:
        key = (kind, path, self._version(path))
        with self._lock:
            if key in self._images:
                self._images.move_to_end(key)
                return self._images[key]
        render = {"thumb": thumbnail_png, "strip": strip_png}[kind]
        png = render(self.frames(path))
        with self._lock:
            self._images[key] = png
            while len(self._images) > self._max_images:
                self._images.popitem(last=False)
        return png
