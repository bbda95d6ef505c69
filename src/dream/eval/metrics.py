"""Image metrics on numpy arrays: PSNR, SSIM and PSNR restricted to a pixel mask.

All functions take images shaped (..., H, W, C) (a single image or any leading batch
dims) and compare them image by image. The data range is 255 for uint8 inputs and 1.0
for floating-point inputs (pass `data_range` to override); both inputs must share one
dtype kind so that a float image is never silently compared with a uint8 one.

SSIM is pinned to one implementation, written here in numpy so that it has no extra
dependency: Wang et al. (2004) with an 11×11 Gaussian window of σ = 1.5 (the window of
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``, truncated at 3.5σ), K1 = 0.01, K2 = 0.03, computed per
channel on the valid region (borders of 5 px, where the window does not fit, are left
out) and averaged over pixels and channels. It agrees with scikit-image's
``structural_similarity(..., channel_axis=-1, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=...)`` to float precision. ``downsample=f``
first average-pools both images over f×f blocks (as piq's ``ssim(downsample=True)`` does
with f = round(min(H, W) / 256), i.e. 2 at 480p: see :func:`ssim_downsample_factor`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BLOCK_COLOR_THRESHOLD",
    "BLOCK_FILL_RGB",
    "BLOCK_OUTLINE_RGB",
    "block_centroid",
    "block_centroid_error",
    "block_iou",
    "block_mask",
    "masked_mse",
    "mse",
    "psnr",
    "psnr_from_mse",
    "ssim",
    "ssim_downsample_factor",
]

# gym-pusht draws the T-block as a fill of (143, 163, 184) inside a 2-px outline of
# (119, 136, 153) (pygame's LightSlateGray); a pixel is "block" when its RGB lies within
# this Euclidean distance of either colour.
BLOCK_FILL_RGB = (143, 163, 184)
BLOCK_OUTLINE_RGB = (119, 136, 153)
BLOCK_COLOR_THRESHOLD = 30.0

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * σ + 0.5): an 11×11 window
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _data_range(a: np.ndarray, b: np.ndarray, data_range: float | None) -> float:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if (a.dtype == np.uint8) != (b.dtype == np.uint8):
        raise ValueError(
            f"compare images of one kind: got {a.dtype} and {b.dtype} (uint8 has range 255, floats 1.0)"
        )
    if data_range is not None:
        return float(data_range)
    return 255.0 if a.dtype == np.uint8 else 1.0


def mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean squared error per image over (H, W, C); returns shape a.shape[:-3]."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    return np.mean(diff * diff, axis=(-3, -2, -1))


def psnr_from_mse(mse_value: np.ndarray | float, data_range: float) -> np.ndarray:
    """10·log10(data_range² / mse); +inf where mse is 0."""
    m = np.asarray(mse_value, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range * data_range / m)


def psnr(a: np.ndarray, b: np.ndarray, *, data_range: float | None = None) -> np.ndarray:
    """PSNR in dB per image (shape a.shape[:-3]); +inf for identical images."""
    return psnr_from_mse(mse(a, b), _data_range(a, b, data_range))


def masked_mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image MSE over the pixels where `mask` is true.

    mask: bool (..., H, W), one flag per pixel (all channels of a masked pixel count).
    Returns (mse, pixel count), each shaped a.shape[:-3]; mse is nan where the mask is empty.
    """
    if mask.shape != a.shape[:-1]:
        raise ValueError(f"mask must be shaped {a.shape[:-1]} (images without channels), got {mask.shape}")
    diff = a.astype(np.float64) - b.astype(np.float64)
    sq = np.sum(diff * diff, axis=-1) * mask  # (..., H, W)
    count = mask.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        value = sq.sum(axis=(-2, -1)) / (count * a.shape[-1])
    return value, count


def _gaussian_kernel() -> np.ndarray:
    x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return k / k.sum()


def _filter_valid(x: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter over axes (-3, -2) of (..., H, W, C), valid region only."""
    k = _gaussian_kernel()
    n = len(k)
    h, w = x.shape[-3], x.shape[-2]
    rows = sum(k[i] * x[..., i : h - n + 1 + i, :, :] for i in range(n))
    return sum(k[i] * rows[..., :, i : w - n + 1 + i, :] for i in range(n))


def ssim_downsample_factor(height: int, width: int) -> int:
    """piq's SSIM downsampling factor: max(1, round(min(H, W) / 256)); 2 for 480×640."""
    return max(1, round(min(height, width) / 256))


def _avg_pool(x: np.ndarray, f: int) -> np.ndarray:
    """Mean over non-overlapping f×f blocks of (..., H, W, C); a ragged border is dropped."""
    h, w = x.shape[-3] // f * f, x.shape[-2] // f * f
    x = x[..., :h, :w, :]
    return x.reshape(*x.shape[:-3], h // f, f, w // f, f, x.shape[-1]).mean(axis=(-4, -2))


def ssim(
    a: np.ndarray, b: np.ndarray, *, data_range: float | None = None, downsample: int = 1
) -> np.ndarray:
    """Mean SSIM per image (shape a.shape[:-3]); 1.0 for identical images. Settings: module docstring."""
    rng = _data_range(a, b, data_range)
    x = a.astype(np.float64)
    y = b.astype(np.float64)
    if downsample > 1:
        x, y = _avg_pool(x, downsample), _avg_pool(y, downsample)
    if min(x.shape[-3], x.shape[-2]) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * SSIM_RADIUS + 1}² px, got {x.shape[-3:-1]}")
    mu_x = _filter_valid(x)
    mu_y = _filter_valid(y)
    var_x = _filter_valid(x * x) - mu_x * mu_x
    var_y = _filter_valid(y * y) - mu_y * mu_y
    cov = _filter_valid(x * y) - mu_x * mu_y
    c1 = (SSIM_K1 * rng) ** 2
    c2 = (SSIM_K2 * rng) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return s.mean(axis=(-3, -2, -1))


def block_mask(frames: np.ndarray) -> np.ndarray:
    """bool (..., H, W): pixels within `BLOCK_COLOR_THRESHOLD` (RGB distance) of the block's fill or outline."""
    if frames.dtype != np.uint8 or frames.shape[-1] != 3:
        raise ValueError(f"block_mask expects uint8 (..., H, W, 3) frames, got {frames.dtype}{frames.shape}")
    x = frames.astype(np.int32)
    limit = BLOCK_COLOR_THRESHOLD * BLOCK_COLOR_THRESHOLD
    masks = []
    for colour in (BLOCK_FILL_RGB, BLOCK_OUTLINE_RGB):
        d = x - np.asarray(colour, np.int32)
        masks.append(np.sum(d * d, axis=-1) <= limit)
    return masks[0] | masks[1]


def block_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Block-mask IoU per image (shape pred.shape[:-3]); 1.0 where neither image shows any block."""
    if pred.shape != gt.shape:
        raise ValueError(f"images differ in shape: {pred.shape} vs {gt.shape}")
    p, g = block_mask(pred), block_mask(gt)
    inter = np.sum(p & g, axis=(-2, -1))
    union = np.sum(p | g, axis=(-2, -1))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def block_centroid(frames: np.ndarray) -> np.ndarray:
    """(..., 2) float64 (x, y) centroid of the block mask in pixel units (pixel centres at integers); nan if empty."""
    m = block_mask(frames)
    h, w = m.shape[-2:]
    count = m.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = np.sum(m * np.arange(w), axis=(-2, -1)) / count
        cy = np.sum(m * np.arange(h)[:, None], axis=(-2, -1)) / count
    return np.stack([cx, cy], axis=-1)


def block_centroid_error(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Distance in pixels between the block-mask centroids of `pred` and `gt`, per image.

    nan where either mask is empty (callers report how many images that excluded).
    """
    if pred.shape != gt.shape:
        raise ValueError(f"images differ in shape: {pred.shape} vs {gt.shape}")
    d = block_centroid(pred) - block_centroid(gt)
    return np.hypot(d[..., 0], d[..., 1])
