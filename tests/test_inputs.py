"""Every accepted start-frame / actions form, and every refusal with its message."""

from __future__ import annotations

import io
import pickle
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dream.errors import InputValidationError
from dream.inputs import (
    MAX_FRAME_PIXELS,
    actions_batch_to_array,
    actions_to_array,
    coerce_actions,
    coerce_actions_batch,
    coerce_start_frame,
    decode_image_bytes,
    decode_npy_bytes,
    encode_npy,
    encode_png,
    fit_frame,
    frame_to_array,
)

RNG = np.random.default_rng(0)
FRAME = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    img.save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


# ------------------------------------------------------------------ frames: accepted forms


def test_uint8_hwc_passes_unchanged() -> None:
    out = frame_to_array(FRAME)
    assert out.dtype == np.uint8 and out.shape == (24, 32, 3)
    np.testing.assert_array_equal(out, FRAME)


def test_chw_is_transposed() -> None:
    np.testing.assert_array_equal(frame_to_array(np.transpose(FRAME, (2, 0, 1))), FRAME)


def test_float_in_unit_range_is_scaled() -> None:
    out = frame_to_array(FRAME.astype(np.float32) / 255.0)
    assert np.abs(out.astype(int) - FRAME.astype(int)).max() <= 1


def test_float_above_one_is_clipped_not_scaled() -> None:
    arr = np.full((4, 4, 3), 300.0, np.float64)
    arr[0, 0] = 12.7
    out = frame_to_array(arr)
    assert out[1, 1, 0] == 255 and out[0, 0, 0] == 12


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "LA", "CMYK"])
def test_pil_images_of_any_mode_become_rgb(mode: str) -> None:
    img = Image.fromarray(FRAME).convert(mode)
    out = frame_to_array(img)
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "WEBP"])
def test_encoded_images_are_sniffed_not_trusted(fmt: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(FRAME).save(buf, format=fmt)
    out = frame_to_array(buf.getvalue())
    assert out.shape == (24, 32, 3)
    if fmt in ("PNG", "BMP"):
        np.testing.assert_array_equal(out, FRAME)


def test_rgba_png_drops_alpha() -> None:
    rgba = np.dstack([FRAME, np.full(FRAME.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(frame_to_array(png_bytes(rgba)), FRAME)


def test_grey_png_is_replicated_to_three_channels() -> None:
    grey = FRAME[:, :, 0]
    out = frame_to_array(png_bytes(grey))
    np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))


def test_16_bit_grey_png_is_scaled_to_8_bits() -> None:
    arr = np.full((8, 8), 65535, np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    assert frame_to_array(buf.getvalue()).max() == 255


def test_grey_and_rgba_arrays_are_converted() -> None:
    assert frame_to_array(FRAME[:, :, 0]).shape == (24, 32, 3)
    rgba = np.dstack([FRAME, np.zeros(FRAME.shape[:2], np.uint8)])
    np.testing.assert_array_equal(frame_to_array(rgba), FRAME)


def test_path_and_str_are_read(tmp_path: Path) -> None:
    p = tmp_path / "start.png"
    p.write_bytes(png_bytes(FRAME))
    np.testing.assert_array_equal(frame_to_array(p), FRAME)
    np.testing.assert_array_equal(frame_to_array(str(p)), FRAME)


# ------------------------------------------------------------------ frames: refusals


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (None, "start_frame is required"),
        (np.zeros((4, 4, 3, 1), np.uint8), r"must be 3-D .* got shape \(4, 4, 3, 1\)"),
        (np.zeros((5, 6, 7), np.uint8), r"3 channels in the last axis; got shape \(5, 6, 7\)"),
        (np.zeros((4, 4, 3), np.int32), "dtype must be uint8 or float; got int32"),
        (np.zeros((4, 4, 3), np.uint16), "dtype must be uint8 or float; got uint16"),
        (np.zeros((4, 4, 3), bool), "dtype must be uint8 or float; got bool"),
        (np.zeros((0, 4, 3), np.uint8), "no pixels"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN or inf"),
        (12345, "unsupported type int"),
        (b"", "empty bytes"),
        (b"definitely not an image", "not a readable image"),
        ("/no/such/frame.png", "does not exist: '/no/such/frame.png'"),
    ],
)
def test_bad_frames_are_refused_with_the_value_named(value: object, match: str) -> None:
    with pytest.raises(InputValidationError, match=match):
        frame_to_array(value)


def test_truncated_png_is_refused() -> None:
    data = png_bytes(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(InputValidationError, match="truncated or corrupt"):
        decode_image_bytes(data[: len(data) // 2])


def _bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge grey image (decompresses to width*height bytes)."""
    import struct

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    raw = zlib.compress(b"\x00" * (width + 1) * 16, 9)  # only 16 rows present; enough to be a bomb header
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", raw)
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_before_decoding() -> None:
    side = int(MAX_FRAME_PIXELS**0.5) + 100
    data = _bomb_png(side, side)
    assert len(data) < 100_000
    with pytest.raises(InputValidationError, match="decompression"):
        decode_image_bytes(data)


def test_coerce_start_frame_wire_forms(tmp_path: Path) -> None:
    raw = b"\xff\xd8 jpeg bytes pass through"
    assert coerce_start_frame(raw) == raw
    p = tmp_path / "f.jpg"
    p.write_bytes(raw)
    assert coerce_start_frame(p) == raw
    png = coerce_start_frame(FRAME)
    np.testing.assert_array_equal(decode_image_bytes(png), FRAME)
    with pytest.raises(InputValidationError, match="path does not exist"):
        coerce_start_frame(tmp_path / "missing.png")


# ------------------------------------------------------------------ resize rule


def test_fit_frame_same_size_is_identity() -> None:
    assert fit_frame(FRAME, (24, 32)) is FRAME


def test_fit_frame_covers_then_centre_crops() -> None:
    wide = np.zeros((100, 200, 3), np.uint8)
    wide[:, 50:150] = 255  # a centre band as wide as the crop
    out = fit_frame(wide, (50, 50))
    assert out.shape == (50, 50, 3)
    # The crop kept only the bright centre (edge columns soften under the bicubic filter).
    assert out[:, 2:-2].min() >= 250 and out[:, [0, -1]].min() >= 200


def test_fit_frame_upscales_small_frames() -> None:
    assert fit_frame(FRAME, (96, 96)).shape == (96, 96, 3)


# ------------------------------------------------------------------ actions: accepted forms


ACTS = RNG.standard_normal((48, 2)).astype(np.float32)


def test_actions_array_float64_and_lists_become_float32() -> None:
    for value in (ACTS, ACTS.astype(np.float64), ACTS.tolist(), tuple(map(tuple, ACTS.tolist()))):
        out = actions_to_array(value, action_dim=2, chunk_size=1)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, ACTS, rtol=0, atol=1e-6)


def test_actions_npy_bytes_and_paths(tmp_path: Path) -> None:
    p = tmp_path / "a.npy"
    p.write_bytes(npy_bytes(ACTS))
    for value in (npy_bytes(ACTS), p, str(p)):
        np.testing.assert_array_equal(actions_to_array(value, action_dim=2), ACTS)


def test_integer_actions_are_accepted() -> None:
    out = actions_to_array(np.ones((12, 2), np.int64), action_dim=2, chunk_size=12)
    assert out.dtype == np.float32


# ------------------------------------------------------------------ actions: refusals


@pytest.mark.parametrize(
    ("value", "kwargs", "match"),
    [
        (None, {}, "actions is required"),
        (np.zeros((48,), np.float32), {}, r"must be 2-D \(T, action_dim\); got shape \(48,\)"),
        (np.zeros((2, 48, 2), np.float32), {}, r"got shape \(2, 48, 2\).*predict_batch"),
        (np.zeros((48, 3), np.float32), {"action_dim": 2}, r"model expects 2, got array with shape \(48, 3\)"),
        (np.zeros((49, 100), np.float32), {"action_dim": 384}, r"model expects 384, got array with shape \(49, 100\)"),
        (np.zeros((0, 2), np.float32), {"action_dim": 2}, r"empty: got shape \(0, 2\)"),
        (np.zeros((13, 4), np.float32), {"chunk_size": 12}, r"T=13 is not a multiple of the model's chunk_size=12.*T=24.*T=12"),
        (np.array([[0.0, np.nan]], np.float32), {}, r"non-finite.*\[t=0, dim=1\]"),
        (np.array([[np.inf, 0.0]], np.float32), {}, r"non-finite.*\[t=0, dim=0\]"),
        (np.array([["a", "b"]]), {}, "dtype must be a real number"),
        (np.zeros((2, 2), np.complex64), {}, "dtype must be a real number"),
        ([[1.0, 2.0], [3.0]], {}, "could not convert nested list"),
        ({"a": 1}, {}, "unsupported type dict"),
        (b"", {}, "empty bytes"),
        (b"PK\x03\x04 zip", {}, "npz archive"),
        (b"not npy at all", {}, "not a .npy file"),
        ("/no/such/actions.npy", {}, "does not exist: '/no/such/actions.npy'"),
    ],
)
def test_bad_actions_are_refused_with_the_value_named(value: object, kwargs: dict, match: str) -> None:
    with pytest.raises(InputValidationError, match=match):
        actions_to_array(value, **kwargs)


def test_pickled_payload_is_refused_and_never_unpickled() -> None:
    class Boom:
        def __reduce__(self):  # would run on unpickling
            return (pytest.fail, ("unpickled!",))

    with pytest.raises(InputValidationError, match="pickled"):
        decode_npy_bytes(pickle.dumps(Boom(), protocol=4))


def test_object_dtype_npy_is_refused() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([[1, "x"]], dtype=object), allow_pickle=True)
    with pytest.raises(InputValidationError, match="dtype=object"):
        decode_npy_bytes(buf.getvalue())


def test_truncated_npy_is_refused() -> None:
    data = npy_bytes(np.zeros((48, 384), np.float32))
    with pytest.raises(InputValidationError, match="malformed or truncated"):
        decode_npy_bytes(data[:-100])


def test_encode_npy_round_trip_is_float32_without_pickle() -> None:
    blob = encode_npy(ACTS.astype(np.float64))
    arr = np.load(io.BytesIO(blob), allow_pickle=False)
    assert arr.dtype == np.float32 and arr.shape == ACTS.shape


# ------------------------------------------------------------------ batches


def test_batch_forms() -> None:
    k3 = np.stack([ACTS, ACTS + 1, ACTS + 2])
    for value in (k3, k3.tolist(), list(k3), [npy_bytes(a) for a in k3]):
        out = actions_batch_to_array(value, action_dim=2, chunk_size=1)
        assert out.shape == (3, 48, 2) and out.dtype == np.float32
        np.testing.assert_allclose(out, k3, atol=1e-6)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (None, "required for predict_batch"),
        (np.zeros((48, 2), np.float32), r"must be 3-D \(K, T, action_dim\); got shape \(48, 2\)"),
        (np.zeros((0, 48, 2), np.float32), "K=0"),
        ([], "list is empty"),
        (np.zeros((2, 48, 5), np.float32), r"model expects 2, got array with shape \(2, 48, 5\)"),
        ([np.zeros((48, 2), np.float32), np.zeros((48, 3), np.float32)], r"actions\[1\] action_dim mismatch"),
        ([np.zeros((48, 2), np.float32), np.zeros((24, 2), np.float32)], "same length T"),
        ("nope", "unsupported type str"),
    ],
)
def test_bad_batches(value: object, match: str) -> None:
    with pytest.raises(InputValidationError, match=match):
        actions_batch_to_array(value, action_dim=2, chunk_size=1)


def test_coerce_actions_wire_forms(tmp_path: Path) -> None:
    raw = b"\x93NUMPY raw bytes pass through unchecked"
    assert coerce_actions(raw) == raw
    assert np.load(io.BytesIO(coerce_actions(ACTS.tolist(), expected_action_dim=2)), allow_pickle=False).dtype == np.float32
    with pytest.raises(InputValidationError, match="model expects 3"):
        coerce_actions(ACTS, expected_action_dim=3)
    blobs = coerce_actions_batch(np.stack([ACTS, ACTS]), expected_action_dim=2)
    assert len(blobs) == 2
    with pytest.raises(InputValidationError, match=r"actions\[1\]: actions action_dim mismatch"):
        coerce_actions_batch([ACTS, np.zeros((48, 3), np.float32)], expected_action_dim=2)


def test_png_encoding_is_lossless() -> None:
    np.testing.assert_array_equal(decode_image_bytes(encode_png(FRAME)), FRAME)
