"""Rollout results: one predicted video (`Rollout`) and K fused candidates (`BatchRollout`).

Both transports return these. A `Rollout` always knows its mp4 (cached in memory, or
downloaded once from ``video_url``) and decodes frames only when asked.

⚠ Two contracts meet here. The 0.5.0 SDK (sdk-surface §7) has ``mp4_bytes()`` as a
method and ``frames`` as the frame count; the product docs have ``mp4_bytes`` as an
attribute and ``frames`` as the decoded (T, H, W, 3) array. We honour both where they
can coexist: ``mp4_bytes`` is bytes that can also be called (``r.mp4_bytes`` and
``r.mp4_bytes()`` both work); ``frames`` is the lazily decoded array, as the product
docs say, and the frame count lives in ``num_frames`` (the envelope's ``frames`` key on
the wire and in ``to_json``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dream._decode import decode_mp4_to_ndarray as _default_decoder

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    import numpy as np

    from dream.types import PredictResponse

__all__ = ["BatchRollout", "Mp4Bytes", "Rollout", "decode_mp4_to_ndarray"]

# Patch point (sdk-surface §2): replace to decode with another library.
decode_mp4_to_ndarray = _default_decoder


class Mp4Bytes(bytes):
    """The raw mp4 of a rollout: plain bytes that can also be called (``r.mp4_bytes()``)."""

    def __call__(self) -> Mp4Bytes:
        return self


def _opt_float(x: Any) -> float | None:
    if x is None or x == "":
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Rollout:
    """One predicted rollout: its video, what it cost and how long the engine took."""

    id: str = ""
    model: str = ""
    created: int = 0
    num_frames: int = 0  # frames in the video, start frame included (T + 1); wire key "frames"
    resolution: tuple[int, int] = (0, 0)
    engine_wall_ms: float = 0.0
    psnr_db: float | None = None
    ssim: float | None = None
    lpips: float | None = None
    cost_usd: float = 0.0
    video_url: str = ""
    video_url_expires_at: int = 0
    seed: int = 0
    customer_id: str = ""
    _mp4_cache: bytes | None = field(default=None, repr=False, compare=False, hash=False)
    _frames_cache: Any = field(default=None, repr=False, compare=False, hash=False)

    # ----------------------------------------------------------------- accessors

    @property
    def request_id(self) -> str:
        """The id of the request that produced this rollout (same as ``id``)."""
        return self.id

    @property
    def wall_s(self) -> float:
        """Engine wall time in seconds."""
        return self.engine_wall_ms / 1000.0

    @property
    def mp4_bytes(self) -> Mp4Bytes:
        """The mp4, downloaded once from ``video_url`` when not already in memory."""
        if self._mp4_cache is None:
            if not self.video_url:
                raise ValueError(f"rollout {self.id!r} has no mp4 in memory and no video_url to download it from")
            import httpx

            resp = httpx.get(self.video_url, follow_redirects=True)
            resp.raise_for_status()
            object.__setattr__(self, "_mp4_cache", resp.content)
        return Mp4Bytes(self._mp4_cache)

    def video(self) -> np.ndarray:
        """Decode the mp4 into uint8 (T, H, W, 3). Needs the ``[decode]`` extra."""
        if self._frames_cache is None:
            try:
                arr = decode_mp4_to_ndarray(bytes(self.mp4_bytes))
            except ImportError as exc:
                raise RuntimeError(
                    "decoding frames needs PyAV: pip install 'dream-engine[decode]'"
                ) from exc
            object.__setattr__(self, "_frames_cache", arr)
        return self._frames_cache

    @property
    def frames(self) -> np.ndarray | None:
        """The decoded frames (T, H, W, 3) uint8, or None when no decoder is installed."""
        try:
            return self.video()
        except RuntimeError:
            return None

    def save(self, path: str | Path) -> Path:
        """Write the mp4 to `path` (its folder must exist) and return the path."""
        p = Path(path)
        p.write_bytes(bytes(self.mp4_bytes))
        return p

    def save_mp4(self, path: str | Path) -> Path:
        """Deprecated alias of ``save``."""
        warnings.warn("Rollout.save_mp4 is deprecated; use Rollout.save", DeprecationWarning, stacklevel=2)
        return self.save(path)

    @property
    def estimated_charge_usd(self) -> float:
        """Deprecated alias of ``cost_usd``."""
        warnings.warn(
            "Rollout.estimated_charge_usd is deprecated; use Rollout.cost_usd", DeprecationWarning, stacklevel=2
        )
        return self.cost_usd

    def to_json(self, indent: int | None = 2) -> str:
        """The rollout envelope as JSON (wire-protocol §7.2 key order)."""
        d: dict[str, Any] = {
            "id": self.id,
            "object": "rollout",
            "model": self.model,
            "created": self.created,
            "frames": self.num_frames,
            "resolution": [self.resolution[0], self.resolution[1]],
            "engine_wall_ms": self.engine_wall_ms,
        }
        for key in ("psnr_db", "ssim", "lpips"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        d.update(
            cost_usd=self.cost_usd,
            video_url=self.video_url,
            video_url_expires_at=self.video_url_expires_at,
            seed=self.seed,
        )
        return json.dumps(d, indent=indent, default=str)

    # ----------------------------------------------------------------- constructors

    @classmethod
    def from_json_envelope(cls, data: Mapping[str, Any], *, customer_id: str = "") -> Rollout:
        """Build from a /v1/rollouts JSON envelope; missing or null fields take defaults."""
        res = data.get("resolution") or ()
        try:
            resolution = (int(res[0]), int(res[1])) if len(res) >= 2 else (0, 0)
        except (TypeError, ValueError):
            resolution = (0, 0)
        return cls(
            id=str(data.get("id") or ""),
            model=str(data.get("model") or ""),
            created=int(data.get("created") or 0),
            num_frames=int(data.get("frames") or 0),
            resolution=resolution,
            engine_wall_ms=float(data.get("engine_wall_ms") or 0.0),
            psnr_db=_opt_float(data.get("psnr_db")),
            ssim=_opt_float(data.get("ssim")),
            lpips=_opt_float(data.get("lpips")),
            cost_usd=float(data.get("cost_usd") or 0.0),
            video_url=str(data.get("video_url") or ""),
            video_url_expires_at=int(data.get("video_url_expires_at") or 0),
            seed=int(data.get("seed") or 0),
            customer_id=customer_id,
        )

    @classmethod
    def from_predict_response(cls, pr: PredictResponse) -> Rollout:
        """Wrap a legacy ``PredictResponse`` (id = its request id, mp4 cached)."""
        r = cls(
            id=pr.request_id,
            engine_wall_ms=pr.engine_wall_ms,
            cost_usd=pr.estimated_charge_usd,
            customer_id=pr.customer_id,
            _mp4_cache=pr.mp4_bytes,
        )
        if pr.frames is not None:
            object.__setattr__(r, "_frames_cache", pr.frames)
        return r

    @classmethod
    def _from_legacy_response(cls, mp4: bytes, headers: Mapping[str, str]) -> Rollout:
        """Build from a raw-mp4 response (/v1/predict) and its X-DreamEngine-* headers."""
        return cls(
            id=headers.get("x-dreamengine-request-id", ""),
            engine_wall_ms=float(headers.get("x-dreamengine-engine-wall-ms") or 0.0),
            psnr_db=_opt_float(headers.get("x-dreamengine-psnr-db")),
            ssim=_opt_float(headers.get("x-dreamengine-ssim")),
            lpips=_opt_float(headers.get("x-dreamengine-lpips")),
            cost_usd=float(headers.get("x-dreamengine-estimated-charge-usd") or 0.0),
            customer_id=headers.get("x-dreamengine-customer-id", ""),
            _mp4_cache=mp4,
        )

    @classmethod
    def _from_batch_mp4(cls, mp4: bytes, *, request_id: str, engine_wall_ms: float, **fields: Any) -> Rollout:
        """One child of a batch: cost 0 (charged on the batch), the batch's id and wall."""
        return cls(id=request_id, engine_wall_ms=engine_wall_ms, cost_usd=0.0, _mp4_cache=mp4, **fields)


@dataclass
class BatchRollout:
    """K candidate rollouts from one start frame, computed in one fused forward."""

    rollouts: list[Rollout]
    request_id: str
    batch_size: int
    engine_wall_ms: float
    estimated_charge_usd: float  # the whole batch's charge
    customer_id: str

    @property
    def cost_usd(self) -> float:
        """Total charge of the batch (K × per-rollout); each child shows 0."""
        return self.estimated_charge_usd

    @property
    def wall_s(self) -> float:
        """Engine wall time of the one fused forward, in seconds."""
        return self.engine_wall_ms / 1000.0

    def __iter__(self) -> Iterator[Rollout]:
        return iter(self.rollouts)

    def __len__(self) -> int:
        return len(self.rollouts)

    def __getitem__(self, idx: int) -> Rollout:
        return self.rollouts[idx]
