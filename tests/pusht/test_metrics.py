"""Closed-form checks of dream.eval.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dream.eval.metrics import masked_mse, psnr, psnr_from_mse, ssim


def _image(seed: int = 0, shape=(32, 32, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_identical_images_have_infinite_psnr_and_unit_ssim():
    a = _image()
    assert psnr(a, a) == math.inf
    assert ssim(a, a) == pytest.approx(1.0)


def test_known_mse_gives_known_psnr_uint8_and_float():
    a = np.full((16, 16, 3), 100, np.uint8)
    b = a + np.uint8(10)  # MSE = 100 on a 255 range
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    af, bf = a / 255.0, b / 255.0  # same images on a 1.0 range
    assert psnr(af, bf) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr_from_mse(0.01, 1.0) == pytest.approx(20.0)


def test_psnr_refuses_mixed_dtypes_and_shapes():
    a = _image()
    with pytest.raises(ValueError, match="one kind"):
        psnr(a, a / 255.0)
    with pytest.raises(ValueError, match="shape"):
        psnr(a, a[:16])


def test_ssim_is_symmetric_and_below_one_for_noise():
    a = _image(1)
    noisy = np.clip(a.astype(int) + np.random.default_rng(2).integers(-40, 40, a.shape), 0, 255).astype(
        np.uint8
    )
    assert ssim(a, noisy) == pytest.approx(ssim(noisy, a))
    assert ssim(a, noisy) < 0.99


def test_ssim_batches_image_by_image():
    a, b = _image(3), _image(4)
    batch = ssim(np.stack([a, a]), np.stack([a, b]))
    assert batch.shape == (2,)
    assert batch[0] == pytest.approx(1.0)
    assert batch[1] == pytest.approx(ssim(a, b))


def test_ssim_matches_scikit_image_settings():
    metrics = pytest.importorskip("skimage.metrics")
    a, b = _image(5, (40, 40, 3)), _image(6, (40, 40, 3))
    expected = metrics.structural_similarity(
        a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(a, b) == pytest.approx(expected, abs=1e-9)


def test_masked_mse_counts_only_masked_pixels():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 30  # error only inside the mask
    b[3, 3] = 200  # error outside the mask
    mask = np.zeros((4, 4), bool)
    mask[0, :2] = True
    value, count = masked_mse(a, b, mask)
    assert count == 2
    assert value == pytest.approx(30**2 * 3 / (2 * 3))


def test_masked_mse_is_nan_for_an_empty_mask():
    a = _image()
    value, count = masked_mse(a, a, np.zeros(a.shape[:2], bool))
    assert count == 0 and math.isnan(value)
