"""frames_from_hf: rows of a Hugging Face dataset, streamed with `datasets` (needs [io]).

Offline: with HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE) set, a Hub dataset is read from the
local Hugging Face cache (a snapshot `hf download <repo> --repo-type dataset` or an
earlier `load_dataset` left there) without a single request, and a dataset that is not
cached fails at once, saying so. When the Hub does not answer (no network), iterating
fails at once with a ConnectionError instead of waiting out `datasets`' retries
(≈ 23 s), unless a cached copy exists, which is then read (with a warning).
"""

from __future__ import annotations

import glob
import io
import logging
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from dream._extras import require
from dream.io.types import IterableSource, SourceRow

__all__ = ["HfSource", "encode_actions_npy", "encode_frame_png", "frames_from_hf"]

log = logging.getLogger(__name__)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_of_image(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def encode_frame_png(value: Any) -> bytes:
    """A dataset frame cell → PNG bytes (sdk-surface §18.2 "HF frame encoding").

    PIL image → PNG in its own mode; `{"bytes", "path"}` dict → PNG bytes pass through,
    other bytes or the file at `path` are decoded and re-encoded (RGB); ndarray (H, W, 3)
    → uint8 PNG (no scaling); str → the file's raw bytes.
    Raises ValueError / TypeError naming what was wrong.
    """
    if isinstance(value, Mapping):
        raw = value.get("bytes")
        path = value.get("path")
        if raw:
            raw = bytes(raw)
            if raw.startswith(_PNG_SIGNATURE):
                return raw
            source: Any = io.BytesIO(raw)
        elif path:
            source = path
        else:
            raise ValueError("frame dict has neither 'bytes' nor 'path'")
        from PIL import Image

        with Image.open(source) as image:
            image.load()
            return _png_of_image(image if image.mode == "RGB" else image.convert("RGB"))
    if isinstance(value, (str, Path)):
        return Path(value).read_bytes()
    if hasattr(value, "save") and hasattr(value, "mode"):  # PIL.Image.Image
        return _png_of_image(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if hasattr(value, "__array__") or (isinstance(value, list) and value and isinstance(value[0], list)):
        import numpy as np
        from PIL import Image

        array = np.asarray(value)
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"frame array must be (H, W, 3), got shape {array.shape}")
        return _png_of_image(Image.fromarray(array.astype(np.uint8), "RGB"))
    raise TypeError(f"unsupported frame type {type(value).__name__}")


def encode_actions_npy(value: Any) -> bytes:
    """A dataset actions cell (nested list or ndarray) → float32 2-D `.npy` bytes."""
    import numpy as np

    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)  # already .npy bytes: checked by the engine like any other row
    if not isinstance(value, (list, tuple)) and not hasattr(value, "__array__"):
        raise TypeError(f"unsupported actions type {type(value).__name__}")
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"actions could not be converted to a float32 array: {exc}") from None
    if array.ndim != 2:
        raise ValueError(f"actions must be 2-D (T, action_dim), got shape {array.shape}")
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _is_local(repo: str | Sequence[str]) -> bool:
    if not isinstance(repo, str):
        return True
    return (
        repo.endswith(".parquet")
        or any(c in repo for c in "*?[")
        or repo.startswith((".", "/", "~"))
        or Path(repo).exists()
    )


_TRUE = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """Whether the Hub must not be contacted: HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set
    (now, or when huggingface_hub read it at import)."""
    if any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _answered(exc: BaseException) -> bool:
    """Whether `exc` is an HTTP answer from the Hub (404, 401, …) rather than no answer."""
    try:
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
    except ImportError:
        return False
    return isinstance(exc, HfHubHTTPError) and not isinstance(exc, OfflineModeIsEnabled)


class HfSource(IterableSource):
    """Rows streamed from a Hub dataset, a local dataset folder, or local Parquet files."""

    def __init__(
        self,
        repo: str | Path | Sequence[str | Path],
        *,
        split: str = "train",
        frame_field: str,
        actions_field: str,
        id_field: str | None = None,
        revision: str | None = None,
        token: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        require("datasets", "frames_from_hf")
        self.repo: str | list[str] = str(repo) if isinstance(repo, (str, Path)) else [str(p) for p in repo]
        self.split = split
        self.frame_field = frame_field
        self.actions_field = actions_field
        self.id_field = id_field
        self.revision = revision
        self.token = token
        self.endpoint = endpoint
        self.is_local = _is_local(self.repo)
        self.local: str | list[str] = self.repo  # what load_dataset reads when is_local
        self.rows_hint_error: str | None = None
        self._unreachable: BaseException | None = None  # why the Hub did not answer
        if self.is_local:
            self.rows_hint = self._local_rows_hint()
        elif hub_offline():
            snapshot = self._cached_snapshot()
            if snapshot is None:
                raise ConnectionError(
                    f"frames_from_hf({self.repo!r}): HF_HUB_OFFLINE is set and {self.repo!r} is not in the "
                    f"local Hugging Face cache ({self._cache_dir()}); download it while online (`hf download "
                    f"{self.repo} --repo-type dataset`), unset HF_HUB_OFFLINE, or give local Parquet files"
                )
            self._read_snapshot(snapshot)
        else:
            self.rows_hint = self._hub_rows_hint()
            if self._unreachable is not None and (snapshot := self._cached_snapshot()) is not None:
                log.warning(
                    "the Hugging Face Hub did not answer (%s); reading the cached copy of %r in %s",
                    self._unreachable, self.repo, snapshot,
                )
                self._read_snapshot(snapshot)

    # -- the local cache --------------------------------------------------------------

    def _cache_dir(self) -> str:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)

    def _cached_snapshot(self) -> str | None:
        """The folder of this dataset's snapshot in the Hugging Face cache, or None (no request)."""
        hub = require("huggingface_hub", "frames_from_hf")
        try:
            return hub.snapshot_download(
                self.repo, repo_type="dataset", revision=self.revision, local_files_only=True,
                token=self.token, endpoint=self.endpoint,
            )
        except Exception as exc:
            log.debug("no cached snapshot of %s: %s", self.repo, exc)
            return None

    def _read_snapshot(self, folder: str) -> None:
        self.is_local = True
        self.local = folder
        self._unreachable = None
        self.rows_hint_error = None
        self.rows_hint = self._local_rows_hint()

    # -- row count ------------------------------------------------------------------

    def _local_parquet_files(self) -> list[str] | None:
        """The Parquet files of the split, or None when that is not knowable cheaply."""
        if isinstance(self.local, list):
            files = self.local
        elif Path(self.local).is_dir():
            datasets = require("datasets", "frames_from_hf")
            try:
                builder = datasets.load_dataset_builder(self.local)
                files = [str(f) for f in (builder.config.data_files or {}).get(self.split, [])]
            except Exception as exc:
                log.debug("cannot resolve data files of %s: %s", self.local, exc)
                return None
        else:
            files = sorted(glob.glob(str(Path(self.local).expanduser())))
        return files if files and all(f.endswith(".parquet") for f in files) else None

    def _local_rows_hint(self) -> int | None:
        files = self._local_parquet_files()
        if not files:
            return None
        try:
            pq = require("pyarrow.parquet", "frames_from_hf")
            return sum(pq.read_metadata(f).num_rows for f in files)
        except Exception as exc:
            log.debug("cannot read Parquet footers of %s: %s", self.local, exc)
            return None

    def _dataset_info(self) -> Any:
        hub = require("huggingface_hub", "frames_from_hf")
        return hub.HfApi(endpoint=self.endpoint, token=self.token).dataset_info(self.repo, revision=self.revision)

    def _hub_rows_hint(self) -> int | None:
        try:
            info = self._dataset_info()
        except ImportError:
            raise
        except Exception as exc:
            log.debug("dataset_info(%s) failed: %s", self.repo, exc)
            # Kept so a caller (the CLI's `dream estimate`) can say why there is no count.
            self.rows_hint_error = f"the Hub did not answer for {self.repo!r}: {type(exc).__name__}: {exc}"
            if not _answered(exc):
                self._unreachable = exc
            return None
        card = getattr(info, "card_data", None) or getattr(info, "cardData", None)
        card_info = None
        if card is not None:
            card_info = card.get("dataset_info") if hasattr(card, "get") else None
        for splits in _splits_of(card_info):
            if self.split in splits:
                return splits[self.split]
        for splits in _splits_of({"splits": getattr(info, "splits", None)}):
            if self.split in splits:
                return splits[self.split]
        return None

    # -- iteration ------------------------------------------------------------------

    def _check_reachable(self) -> None:
        """Raise ConnectionError at once when the Hub did not answer at construction and
        still does not (one request), instead of letting `datasets` retry for ≈ 23 s."""
        if self._unreachable is None:
            return
        try:
            self._dataset_info()
        except Exception as exc:
            if _answered(exc):
                return  # it answers again; load_dataset says what is wrong
            from huggingface_hub import constants

            endpoint = self.endpoint or constants.ENDPOINT
            text = " ".join(str(exc).split())
            raise ConnectionError(
                f"frames_from_hf({self.repo!r}): cannot reach the Hugging Face Hub at {endpoint} "
                f"({type(exc).__name__}: {text}); with a cached copy set HF_HUB_OFFLINE=1, or give local "
                "Parquet files (hf+parquet://…)"
            ) from None
        self._unreachable = None

    def _open(self) -> Any:
        datasets = require("datasets", "frames_from_hf")
        if not self.is_local:
            self._check_reachable()
            ds = datasets.load_dataset(
                self.repo, split=self.split, streaming=True, token=self.token, revision=self.revision
            )
        elif isinstance(self.local, list) or not Path(self.local).is_dir():
            ds = datasets.load_dataset("parquet", data_files=self.local, split=self.split, streaming=True)
        else:
            ds = datasets.load_dataset(self.local, split=self.split, streaming=True)
        features = getattr(ds, "features", None) or {}
        feature = features.get(self.frame_field)
        if isinstance(feature, datasets.Image) and feature.decode:
            # Keep the stored bytes: PNG passes through instead of decode + re-encode.
            ds = ds.cast_column(self.frame_field, datasets.Image(decode=False))
        return ds

    def __iter__(self) -> Iterator[SourceRow]:
        return self._iter_rows(())

    def _iter_rows(self, skip_ids: Collection[str]) -> Iterator[SourceRow]:
        """Rows in dataset order; rows in `skip_ids` are not encoded."""
        skip_fields = {self.frame_field, self.actions_field}
        for index, row in enumerate(self._open()):
            metadata = {k: v for k, v in row.items() if k not in skip_fields}
            if self.id_field is None:
                row_id = f"row_{index:08d}"
            elif self.id_field not in row or row[self.id_field] is None:
                yield SourceRow(
                    f"row_{index:08d}",
                    b"",
                    b"",
                    metadata,
                    error=f"id column {self.id_field!r} is missing or null in this row; columns: {sorted(row)}",
                )
                continue
            else:
                row_id = str(row[self.id_field])
            if row_id in skip_ids:
                yield SourceRow(row_id, b"", b"", metadata)
                continue
            if self.frame_field not in row or self.actions_field not in row:
                missing = [f for f in (self.frame_field, self.actions_field) if f not in row]
                yield SourceRow(
                    row_id,
                    b"",
                    b"",
                    metadata,
                    error=f"dataset row has no column(s) {missing}; has {sorted(row)}",
                )
                continue
            try:
                frame = encode_frame_png(row[self.frame_field])
            except Exception as exc:
                yield SourceRow(row_id, b"", b"", metadata, error=f"frame column {self.frame_field!r}: {exc}")
                continue
            try:
                actions = encode_actions_npy(row[self.actions_field])
            except Exception as exc:
                yield SourceRow(
                    row_id, b"", b"", metadata, error=f"actions column {self.actions_field!r}: {exc}"
                )
                continue
            yield SourceRow(row_id, frame, actions, metadata)

    def __repr__(self) -> str:
        return f"HfSource({self.repo!r}, split={self.split!r}, rows={self.rows_hint})"


def _splits_of(dataset_info: Any) -> Iterator[dict[str, int]]:
    """{split name: num_examples} from a card's `dataset_info` (dict or list of configs)."""
    if isinstance(dataset_info, list):
        for item in dataset_info:
            yield from _splits_of(item)
        return
    if isinstance(dataset_info, Mapping):
        splits = dataset_info.get("splits")
    else:
        splits = getattr(dataset_info, "splits", None)
    out: dict[str, int] = {}
    if isinstance(splits, Mapping):
        for name, split in splits.items():
            n = (
                split.get("num_examples")
                if isinstance(split, Mapping)
                else getattr(split, "num_examples", None)
            )
            if isinstance(n, int):
                out[str(name)] = n
    elif isinstance(splits, list):
        for split in splits:
            if isinstance(split, Mapping) and isinstance(split.get("num_examples"), int):
                out[str(split.get("name"))] = split["num_examples"]
    if out:
        yield out


def frames_from_hf(
    repo: str | Path | Sequence[str | Path],
    *,
    split: str = "train",
    frame_field: str,
    actions_field: str,
    id_field: str | None = None,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> HfSource:
    """Rows of a Hugging Face dataset, streamed with `datasets.load_dataset(streaming=True)`.

    `repo`: a Hub dataset id ("org/name"), a local dataset folder, or local Parquet file(s)
    (a path, a glob, or a list). `frame_field` may hold PIL images, `{"bytes", "path"}`
    dicts (the HF Image feature; PNG bytes pass through), (H, W, 3) arrays, or file paths;
    `actions_field` holds (T, action_dim) nested lists or arrays. `id_field` names the
    row-id column (default `row_{index:08d}`); every column other than the frame and
    actions goes to `metadata`. A row that cannot be encoded becomes a row with `error`
    set. `rows_hint`: Parquet footers for local data; for Hub ids the card's
    `dataset_info.splits` (None when unknown). `endpoint` (beyond the spec) points the
    rows_hint lookup at another Hub; the rows themselves stream through `datasets`, which
    follows the HF_ENDPOINT environment variable. Needs [io].
    """
    return HfSource(
        repo,
        split=split,
        frame_field=frame_field,
        actions_field=actions_field,
        id_field=id_field,
        revision=revision,
        token=token,
        endpoint=endpoint,
    )
