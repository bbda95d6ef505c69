"""Start frames and action sequences: every accepted form, made canonical or refused.

The one place where user inputs (ndarrays, PIL images, bytes, paths, nested lists, .npy
blobs) become either canonical values or an `InputValidationError` that names the
offending value. The client, the embedded transport and the server all call it, so a
bad input gets the same message whichever way it arrives.

Two levels:

* ``coerce_*`` (sdk-surface §15): value → wire bytes (PNG / .npy). Used by the HTTP
  transport; bytes and paths pass through unchecked, as in the 0.5.0 SDK, because the
  server decodes and validates them with the functions below.
* ``*_to_array`` / ``decode_*``: value or bytes → validated arrays. Used by the embedded
  engine and by the server. Nothing is trusted: images are sniffed (never by their
  label), size-checked before decoding (decompression bombs), fully decoded (truncated
  files), converted to RGB; .npy blobs are read with ``allow_pickle=False`` and checked
  for shape, dtype, NaN and inf.

Frame resizing (``fit_frame``): a frame whose size differs from the spec's resolution
is scaled, keeping its aspect ratio, until it covers the target, then centre-cropped;
the scaling is Pillow's bicubic filter, which antialiases when shrinking.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dream.errors import InputValidationError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    StartFrameInput = np.ndarray | Image.Image | bytes | bytearray | memoryview | str | Path
    ActionsInput = np.ndarray | list | tuple | bytes | bytearray | memoryview | str | Path
else:
    StartFrameInput = Any
    ActionsInput = Any

__all__ = [
    "MAX_ACTIONS_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_FRAME_PIXELS",
    "ActionsInput",
    "ImageHeader",
    "StartFrameInput",
    "actions_batch_to_array",
    "actions_to_array",
    "check_actions",
    "coerce_actions",
    "coerce_actions_batch",
    "coerce_start_frame",
    "decode_image_bytes",
    "decode_npy_bytes",
    "encode_npy",
    "encode_png",
    "fit_frame",
    "frame_to_array",
    "read_image_header",
]

# Limits that keep one request from exhausting memory. An 8K frame is 33 M pixels.
MAX_FRAME_PIXELS = 40_000_000
MAX_FRAME_BYTES = 64 * 1024 * 1024
MAX_ACTIONS_BYTES = 64 * 1024 * 1024
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PREFIXES = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _np():
    import numpy as np

    return np


def _pil():
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is a base dependency
        raise InputValidationError("start_frame: Pillow is required to handle images (pip install pillow)") from exc
    return Image


def _is_bytes_like(value: object) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview))


def _read_path(value: str | Path, what: str, limit: int) -> bytes:
    path = Path(value)
    if not path.is_file():
        if path.exists():
            raise InputValidationError(f"{what} path is not a file: {str(path)!r}")
        raise InputValidationError(f"{what} path does not exist: {str(path)!r}")
    size = path.stat().st_size
    if size > limit:
        raise InputValidationError(f"{what} file {str(path)!r} is {size} bytes; the limit is {limit} bytes")
    return path.read_bytes()


def _shape(value: Any) -> str:
    return str(tuple(getattr(value, "shape", ())))


# --------------------------------------------------------------------------- frames


def encode_png(frame: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W, 3) frame (fast settings; lossless either way)."""
    Image = _pil()
    buf = io.BytesIO()
    Image.fromarray(frame, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _image_to_rgb_array(img: Image.Image, what: str) -> np.ndarray:
    np = _np()
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit and 32-bit grey: scale to 8 bits rather than let Pillow clip.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        grey = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise InputValidationError(f"{what}: floating-point image contains NaN or inf")
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        grey = np.clip(arr * scale, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != "RGB":
        # RGBA/LA: alpha is dropped (not composited); L/1/CMYK/YCbCr/P: converted.
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def decode_image_bytes(data: bytes | bytearray | memoryview, *, what: str = "start_frame") -> np.ndarray:
    """Decode image bytes (PNG, JPEG, or any format Pillow reads) into uint8 (H, W, 3).

    Refuses empty or non-image bytes, images over MAX_FRAME_PIXELS (checked from the
    header, before decoding: decompression bombs), truncated files and animations'
    extra frames (the first frame is used).
    """
    Image = _pil()
    data = bytes(data)
    if not data:
        raise InputValidationError(f"{what}: empty bytes; expected a PNG or JPEG image")
    if len(data) > MAX_FRAME_BYTES:
        raise InputValidationError(f"{what}: {len(data)} bytes is over the {MAX_FRAME_BYTES}-byte limit")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise InputValidationError(f"{what}: image refused as a decompression bomb ({exc})") from exc
    except Exception as exc:
        head = data[:16]
        raise InputValidationError(
            f"{what}: bytes are not a readable image (first bytes {head!r}, {len(data)} bytes total); "
            "expected PNG or JPEG"
        ) from exc
    width, height = img.size
    if width <= 0 or height <= 0:
        raise InputValidationError(f"{what}: image has no pixels (size {width}x{height})")
    if width * height > MAX_FRAME_PIXELS:
        raise InputValidationError(
            f"{what}: image is {width}x{height} = {width * height} pixels, over the "
            f"{MAX_FRAME_PIXELS}-pixel limit (decompression-bomb guard)"
        )
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        raise InputValidationError(f"{what}: image refused as a decompression bomb ({exc})") from exc
    except Exception as exc:
        raise InputValidationError(
            f"{what}: {img.format or 'image'} data is truncated or corrupt ({width}x{height} declared, "
            f"{len(data)} bytes): {exc}"
        ) from exc
    return _image_to_rgb_array(img, what)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type → channels (greyscale, RGB, palette, grey + alpha, RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
# JPEG start-of-frame markers (SOF0..SOF15 but DHT, JPG and DAC, which share the range).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class ImageHeader:
    """What a PNG or JPEG header says about the pixels, read without decoding any."""

    format: str  # "PNG" | "JPEG"
    width: int
    height: int
    bit_depth: int  # bits per sample
    channels: int  # samples per pixel as stored

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def decoded_bytes(self) -> int:
        """Bytes of the decoded samples (what a decoder must allocate, at least)."""
        return self.pixels * self.channels * max(1, (self.bit_depth + 7) // 8)


def _png_header(data: bytes, what: str) -> ImageHeader:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise InputValidationError(f"{what}: PNG without an IHDR header chunk ({len(data)} bytes)")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour = data[24], data[25]
    if colour not in _PNG_CHANNELS or depth not in _PNG_DEPTHS[colour]:
        raise InputValidationError(f"{what}: PNG header has colour type {colour} with bit depth {depth}, which PNG does not allow")
    return ImageHeader("PNG", width, height, depth, _PNG_CHANNELS[colour])


def _jpeg_header(data: bytes, what: str) -> ImageHeader:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise InputValidationError(f"{what}: JPEG marker expected at byte {i}, got 0x{data[i]:02x}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in _JPEG_SOF:
            if i + 10 > n or length < 8:
                break
            depth = data[i + 4]
            height, width = int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
            return ImageHeader("JPEG", width, height, depth, data[i + 9])
        if marker in (0xD9, 0xDA) or length < 2:  # end of image, or scan data before any frame header
            break
        i += 2 + length
    raise InputValidationError(f"{what}: JPEG without a frame header (SOF) before its image data ({n} bytes)")


def read_image_header(data: bytes | bytearray | memoryview, *, what: str = "start_frame") -> ImageHeader:
    """Format, size, bit depth and channels of PNG or JPEG bytes, from the header alone.

    Costs no decoding, so a server can refuse a frame whose pixels would not fit its
    budget before spending memory on it. Anything but PNG or JPEG is refused.
    """
    head = bytes(data[:65536])
    if not head:
        raise InputValidationError(f"{what}: empty bytes; expected a PNG or JPEG image")
    if head.startswith(_PNG_SIGNATURE):
        header = _png_header(head, what)
    elif head.startswith(b"\xff\xd8\xff"):
        header = _jpeg_header(bytes(data), what)
    else:
        raise InputValidationError(
            f"{what}: bytes are not a readable image: not PNG or JPEG (first bytes {head[:16]!r}, "
            f"{len(data)} bytes total)"
        )
    if header.width <= 0 or header.height <= 0:
        raise InputValidationError(f"{what}: {header.format} header declares no pixels ({header.width}x{header.height})")
    return header


def _ndarray_frame_to_hwc(arr: np.ndarray, what: str) -> np.ndarray:
    """Any accepted ndarray layout → uint8 (H, W, 3)."""
    np = _np()
    if arr.ndim == 2:
        # ⚠ sdk-surface §15.1 refuses non-3-D arrays; we accept grey (H, W) and convert.
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise InputValidationError(
            f"{what} ndarray must be 3-D (H,W,3) or (3,H,W); got shape {_shape(arr)}"
        )
    if arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = np.transpose(arr, (1, 2, 0))  # CHW → HWC
    channels = arr.shape[2]
    if channels not in (1, 3, 4):
        raise InputValidationError(
            f"{what} ndarray must have 3 channels in the last axis; got shape {_shape(arr)}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputValidationError(f"{what} ndarray has no pixels; got shape {_shape(arr)}")
    if arr.shape[0] * arr.shape[1] > MAX_FRAME_PIXELS:
        raise InputValidationError(
            f"{what} ndarray is {arr.shape[1]}x{arr.shape[0]} pixels, over the {MAX_FRAME_PIXELS}-pixel limit"
        )
    if arr.dtype == np.uint8:
        out = arr
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputValidationError(f"{what} float ndarray contains NaN or inf")
        scaled = arr.astype(np.float32)
        if arr.size and float(scaled.max()) <= 1.0:
            scaled = scaled * 255.0
        out = np.clip(scaled, 0, 255).astype(np.uint8)  # truncating, as sdk-surface §15.1
    else:
        raise InputValidationError(f"{what} ndarray dtype must be uint8 or float; got {arr.dtype}")
    if channels == 1:
        out = np.repeat(out, 3, axis=2)
    elif channels == 4:
        out = out[:, :, :3]  # alpha dropped
    return np.ascontiguousarray(out)


def frame_to_array(value: StartFrameInput, *, what: str = "start_frame") -> np.ndarray:
    """Any accepted start-frame form → validated uint8 (H, W, 3), not yet resized."""
    np = _np()
    if value is None:
        raise InputValidationError(f"{what} is required (got None); pass an image array, PIL image, bytes or path")
    if _is_bytes_like(value):
        return decode_image_bytes(value, what=what)
    if isinstance(value, (str, os.PathLike)):
        return decode_image_bytes(_read_path(value, what, MAX_FRAME_BYTES), what=f"{what} {str(value)!r}")
    if isinstance(value, np.ndarray):
        return _ndarray_frame_to_hwc(value, what)
    Image = _pil()
    if isinstance(value, Image.Image):
        w, h = value.size
        if w * h > MAX_FRAME_PIXELS:
            raise InputValidationError(f"{what}: PIL image is {w}x{h}, over the {MAX_FRAME_PIXELS}-pixel limit")
        return _image_to_rgb_array(value, what)
    raise InputValidationError(
        f"{what}: unsupported type {type(value).__name__}. Pass a uint8 ndarray (H,W,3) or (3,H,W), "
        "a float ndarray in [0, 1], a PIL image, PNG/JPEG bytes, or a path"
    )


def fit_frame(frame: np.ndarray, resolution: tuple[int, int]) -> np.ndarray:
    """Resize uint8 (H, W, 3) to `resolution` (H, W): scale to cover, then centre-crop."""
    np = _np()
    th, tw = resolution
    h, w = frame.shape[:2]
    if (h, w) == (th, tw):
        return frame
    Image = _pil()
    scale = max(th / h, tw / w)
    sh, sw = max(th, math.ceil(h * scale - 1e-9)), max(tw, math.ceil(w * scale - 1e-9))
    img = Image.fromarray(frame, "RGB").resize((sw, sh), Image.Resampling.BICUBIC)
    top, left = (sh - th) // 2, (sw - tw) // 2
    out = np.asarray(img, dtype=np.uint8)[top : top + th, left : left + tw]
    return np.ascontiguousarray(out)


def coerce_start_frame(value: StartFrameInput) -> bytes:
    """Start frame → wire bytes (sdk-surface §15.1): PNG, or the caller's bytes untouched."""
    np = _np()
    if value is None:
        raise InputValidationError(
            "start_frame is required (got None). Pass an image array, PIL image, bytes or path."
        )
    if _is_bytes_like(value):
        return bytes(value)
    if isinstance(value, (str, os.PathLike)):
        return _read_path(value, "start_frame", MAX_FRAME_BYTES)
    Image = _pil()
    if isinstance(value, Image.Image):
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return buf.getvalue()
    if isinstance(value, np.ndarray):
        return encode_png(_ndarray_frame_to_hwc(value, "start_frame"))
    raise InputValidationError(
        f"start_frame: unsupported type {type(value).__name__}. Pass a uint8 ndarray (H,W,3) or (3,H,W), "
        "a float ndarray in [0, 1], a PIL image, PNG/JPEG bytes, or a path"
    )


# --------------------------------------------------------------------------- actions


def encode_npy(actions: np.ndarray) -> bytes:
    """.npy bytes (float32, C order, no pickle) of an action array."""
    np = _np()
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(actions, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def decode_npy_bytes(data: bytes | bytearray | memoryview, *, what: str = "actions") -> np.ndarray:
    """Read a .npy blob safely (never unpickles); returns the array as stored."""
    np = _np()
    data = bytes(data)
    if not data:
        raise InputValidationError(f"{what}: empty bytes; expected a .npy file (numpy.save)")
    if len(data) > MAX_ACTIONS_BYTES:
        raise InputValidationError(f"{what}: {len(data)} bytes is over the {MAX_ACTIONS_BYTES}-byte limit")
    if data.startswith(_ZIP_MAGIC):
        raise InputValidationError(f"{what}: got an .npz archive; pass one (T, action_dim) array saved with numpy.save")
    if not data.startswith(_NPY_MAGIC):
        if data.startswith(_PICKLE_PREFIXES):
            raise InputValidationError(f"{what}: got pickled data, which is refused; save the array with numpy.save")
        raise InputValidationError(
            f"{what}: bytes are not a .npy file (first bytes {data[:12]!r}); save the array with numpy.save"
        )
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object arrays" in str(exc).lower():
            raise InputValidationError(
                f"{what}: .npy holds Python objects (dtype=object), which are refused; save a float32 array"
            ) from exc
        raise InputValidationError(f"{what}: .npy is malformed or truncated ({len(data)} bytes): {exc}") from exc
    except Exception as exc:
        raise InputValidationError(f"{what}: .npy is malformed or truncated ({len(data)} bytes): {exc}") from exc
    return arr


def _to_float32_actions(arr: np.ndarray, what: str) -> np.ndarray:
    np = _np()
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputValidationError(f"{what}: dtype must be a real number type (float32 preferred); got {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if np.issubdtype(arr.dtype, np.floating) and arr.size:
        big = np.abs(arr[np.isfinite(arr)]).max(initial=0.0)
        if big > np.finfo(np.float32).max:
            raise InputValidationError(f"{what}: values up to {big:.3g} overflow float32")
    return out


def check_actions(
    arr: np.ndarray,
    *,
    action_dim: int | None,
    chunk_size: int | None,
    what: str = "actions",
    require_nonempty: bool = True,
) -> np.ndarray:
    """Validate a 2-D action array against a spec and return it as float32 (T, A)."""
    np = _np()
    if arr.ndim != 2:
        raise InputValidationError(
            f"{what} ndarray must be 2-D (T, action_dim); got shape {_shape(arr)}. "
            "For K candidate sequences use predict_batch with a (K, T, action_dim) array."
        )
    out = _to_float32_actions(arr, what)
    T, A = out.shape
    if action_dim and action_dim != A:
        raise InputValidationError(
            f"{what} action_dim mismatch: model expects {action_dim}, got array with shape {_shape(arr)}"
        )
    if require_nonempty and T == 0:
        raise InputValidationError(
            f"{what} is empty: got shape {_shape(arr)}; need at least {max(chunk_size or 1, 1)} action(s)"
        )
    if chunk_size and chunk_size > 1 and T % chunk_size:
        up, down = (T // chunk_size + 1) * chunk_size, T - T % chunk_size
        raise InputValidationError(
            f"{what} length T={T} is not a multiple of the model's chunk_size={chunk_size}. "
            f"Pad to T={up} by repeating the last action, or truncate to T={down}."
        )
    bad = ~np.isfinite(out)
    if bad.any():
        t, a = (int(i) for i in np.argwhere(bad)[0])
        raise InputValidationError(
            f"{what} contains {int(bad.sum())} non-finite value(s) (NaN or inf); first at [t={t}, dim={a}]: {out[t, a]}"
        )
    return out


def actions_to_array(
    value: ActionsInput,
    *,
    action_dim: int | None = None,
    chunk_size: int | None = None,
    what: str = "actions",
) -> np.ndarray:
    """Any accepted actions form → validated float32 (T, action_dim)."""
    np = _np()
    if value is None:
        raise InputValidationError(f"{what} is required (got None); pass a (T, action_dim) array, list, .npy bytes or path")
    if _is_bytes_like(value):
        arr = decode_npy_bytes(value, what=what)
    elif isinstance(value, (str, os.PathLike)):
        arr = decode_npy_bytes(_read_path(value, what, MAX_ACTIONS_BYTES), what=f"{what} {str(value)!r}")
    elif isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise InputValidationError(f"{what}: could not convert nested list/tuple to ndarray: {exc}") from exc
    elif isinstance(value, np.ndarray):
        arr = value
    else:
        raise InputValidationError(
            f"{what}: unsupported type {type(value).__name__}. Pass a (T, action_dim) ndarray, nested list, "
            ".npy bytes or a path to a .npy file"
        )
    return check_actions(arr, action_dim=action_dim, chunk_size=chunk_size, what=what)


def actions_batch_to_array(
    value: Any,
    *,
    action_dim: int | None = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """K candidate action sequences (any accepted form) → validated float32 (K, T, action_dim)."""
    np = _np()
    if value is None:
        raise InputValidationError("actions is required for predict_batch (got None).")
    if _is_per_rollout_list(value):
        if len(value) == 0:
            raise InputValidationError("actions list is empty; need at least one entry.")
        arrays = []
        for i, item in enumerate(value):
            arrays.append(actions_to_array(item, action_dim=action_dim, chunk_size=chunk_size, what=f"actions[{i}]"))
        lengths = {a.shape[0] for a in arrays}
        if len(lengths) > 1:
            raise InputValidationError(
                f"actions for predict_batch must all have the same length T; got lengths {sorted(lengths)}"
            )
        return np.stack(arrays)
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            raise InputValidationError("actions list is empty; need at least one entry.")
        try:
            value = np.asarray(value, dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise InputValidationError(f"actions: could not convert nested list/tuple to ndarray: {exc}") from exc
    if not isinstance(value, np.ndarray):
        raise InputValidationError(f"actions for predict_batch: unsupported type {type(value).__name__}.")
    if value.ndim != 3:
        raise InputValidationError(
            f"actions for predict_batch must be 3-D (K, T, action_dim); got shape {_shape(value)}. "
            "For a single sequence use predict."
        )
    if action_dim and value.shape[2] != action_dim:
        raise InputValidationError(
            f"actions action_dim mismatch: model expects {action_dim}, got array with shape {_shape(value)}"
        )
    if value.shape[0] == 0:
        raise InputValidationError("actions has K=0 rollouts; need at least one.")
    return np.stack(
        [check_actions(value[k], action_dim=action_dim, chunk_size=chunk_size, what=f"actions[{k}]")
         for k in range(value.shape[0])]
    )


def _is_per_rollout_list(value: Any) -> bool:
    """A list/tuple whose first element is itself one rollout's actions (bytes, path or array)."""
    np = _np()
    if not isinstance(value, (list, tuple)) or not value:
        return False
    first = value[0]
    return _is_bytes_like(first) or isinstance(first, (str, os.PathLike, np.ndarray))


def coerce_actions(
    value: ActionsInput,
    *,
    expected_action_dim: int | None = None,
    expected_chunk_size: int | None = None,
) -> bytes:
    """Actions → wire .npy bytes (sdk-surface §15.2). Bytes and paths pass through unchecked."""
    if value is None:
        raise InputValidationError(
            "actions is required (got None). Pass a (T, action_dim) array, list, .npy bytes or path."
        )
    if _is_bytes_like(value):
        return bytes(value)
    if isinstance(value, (str, os.PathLike)):
        return _read_path(value, "actions", MAX_ACTIONS_BYTES)
    arr = actions_to_array(value, action_dim=expected_action_dim, chunk_size=expected_chunk_size)
    return encode_npy(arr)


def coerce_actions_batch(
    value: Any,
    *,
    expected_action_dim: int | None = None,
    expected_chunk_size: int | None = None,
) -> list[bytes]:
    """K candidate sequences → K wire .npy blobs (sdk-surface §15.3)."""
    if _is_per_rollout_list(value):
        out = []
        for i, item in enumerate(value):
            try:
                out.append(
                    coerce_actions(item, expected_action_dim=expected_action_dim, expected_chunk_size=expected_chunk_size)
                )
            except InputValidationError as exc:
                raise InputValidationError(f"actions[{i}]: {exc.message}") from exc
        return out
    arr = actions_batch_to_array(value, action_dim=expected_action_dim, chunk_size=expected_chunk_size)
    return [encode_npy(a) for a in arr]
