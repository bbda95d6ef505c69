"""mp4 → frames for result objects (sdk-surface §2: ``dream._decode.decode_mp4_to_ndarray``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def decode_mp4_to_ndarray(mp4: bytes) -> np.ndarray:
    """Decode an mp4 into uint8 (T, H, W, 3); ImportError without PyAV (the ``[decode]`` extra)."""
    from dream.engine.video import decode_mp4

    return decode_mp4(mp4)
