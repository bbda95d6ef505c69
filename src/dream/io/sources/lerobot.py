"""frames_from_lerobot: LeRobot v3.0 / v2.1 datasets as (start frame, next T actions) rows.

Beyond the 0.5.0 product. Reads the documented on-disk layout with pyarrow + PyAV (the
`lerobot` package itself is not needed):

v3.0  meta/info.json, meta/episodes/chunk-XXX/file-XXX.parquet (one row per episode with
      its data file and, per camera, its video file and `from_timestamp`),
      data/chunk-XXX/file-XXX.parquet (many episodes per file), videos/<camera>/chunk-XXX/
      file-XXX.mp4 (many episodes concatenated; the episode starts at `from_timestamp`).
v2.1  meta/info.json, meta/episodes.jsonl, meta/tasks.jsonl, one data parquet and one mp4
      per episode (paths from info.json's `data_path` / `video_path` templates).

A row is one episode (start frame = the episode's first frame, actions = all of its
actions) or, with `stride`, one window per `stride` frames (start frame = the window's
first frame, actions = the `horizon` actions that follow it). The start frame is decoded
from the camera's video at the row's timestamp (closest frame within half a frame
period), or read from the data file for image-typed cameras.

Robot data at a model's rate (`fps`, `actions`): with ``fps=10`` on a 20 fps dataset every
second step is used, for the start frames and for the actions (so `horizon` and `stride`
count 10 fps steps). ``actions="gr1"`` turns raw 44-dim GR-1 vectors into DreamDojo's
model input with :func:`dream.actions.gr1_actions`: the row's start frame is then the step
after the first one it reads (the step before the start frame is the relative actions'
baseline, its ``observation.state`` the proprio state), and each row carries T model
actions for T + 1 raw steps.
"""

from __future__ import annotations

import io
import json
import logging
import math
import warnings
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dream._extras import require
from dream.io.types import IterableSource, SourceRow

__all__ = ["LeRobotSource", "frames_from_lerobot"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Episode:
    index: int
    length: int
    tasks: tuple[str, ...]
    data_file: str  # path relative to the dataset root
    video_file: str | None  # None for image cameras
    video_from_s: float  # where the episode starts inside video_file (v3.0; 0.0 for v2.1)


class _Files:
    """Dataset files by relative path: a local folder, or a Hub repo downloaded file by file."""

    def __init__(
        self,
        repo: str,
        *,
        revision: str | None,
        token: str | None,
        endpoint: str | None,
        cache_dir: str | None,
    ) -> None:
        root = Path(repo).expanduser()
        self.local_root: Path | None = root if root.is_dir() else None
        if self.local_root is None:
            _check_not_a_mistyped_path(repo, root)
        self.repo = repo
        self.revision = revision
        self.token = token
        self.endpoint = endpoint
        self.cache_dir = cache_dir
        if self.local_root is None and (repo.count("/") != 1 or repo.startswith((".", "/"))):
            raise ValueError(
                f"frames_from_lerobot: {repo!r} is neither a local folder nor a Hub repo id 'org/name'"
            )

    def path(self, rel: str) -> Path:
        if self.local_root is not None:
            return self.local_root / rel
        hub = require("huggingface_hub", "frames_from_lerobot on a Hub repo")
        try:
            return self._download(hub, rel)
        except Exception as exc:
            if rel == "meta/info.json":
                raise ValueError(
                    f"frames_from_lerobot: {self.repo!r} is not a local folder, and as a Hub dataset repo id "
                    f"it failed: {type(exc).__name__}: {exc}"
                ) from exc
            raise

    def _download(self, hub: Any, rel: str) -> Path:
        return Path(
            hub.hf_hub_download(
                self.repo,
                rel,
                repo_type="dataset",
                revision=self.revision,
                token=self.token,
                endpoint=self.endpoint,
                cache_dir=self.cache_dir,
            )
        )

    def list(self, folder: str) -> list[str]:
        if self.local_root is not None:
            base = self.local_root / folder
            return sorted(
                str(p.relative_to(self.local_root).as_posix()) for p in base.rglob("*") if p.is_file()
            )
        hub = require("huggingface_hub", "frames_from_lerobot on a Hub repo")
        api = hub.HfApi(endpoint=self.endpoint, token=self.token)
        entries = api.list_repo_tree(
            self.repo,
            path_in_repo=folder.rstrip("/"),
            recursive=True,
            repo_type="dataset",
            revision=self.revision,
        )
        return sorted(e.path for e in entries if isinstance(e, hub.hf_api.RepoFile))


class _VideoReader:
    """Keeps one video open and returns the frame closest to a timestamp."""

    def __init__(self) -> None:
        self._path: Path | None = None
        self._container: Any = None

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = None
        self._path = None

    def frame_png(self, path: Path, timestamp_s: float, tolerance_s: float) -> bytes:
        av = require("av", "frames_from_lerobot (video decoding)")
        if path != self._path:
            self.close()
            self._container = av.open(str(path))
            self._path = path
        container = self._container
        stream = container.streams.video[0]
        seek_s, back_s = timestamp_s, 0.0
        while True:
            best, best_gap, first_t = _scan(container, stream, seek_s, timestamp_s, tolerance_s)
            if best is not None and best_gap <= tolerance_s:
                break
            # With an open GOP (x265's default) a frame can precede its keyframe in display
            # order; it decodes only from the GOP before, so a seek that lands on that
            # keyframe never yields it. Seek further back (doubling) and decode forward.
            if seek_s <= 0.0 or (first_t is not None and first_t <= timestamp_s - tolerance_s):
                break
            back_s = max(1.0, 2 * back_s)
            seek_s = max(0.0, timestamp_s - back_s)
        if best is None or best_gap > tolerance_s:
            got = "no frame" if best is None else f"nearest frame {best_gap:.4f} s away"
            raise ValueError(f"video {path}: no frame at t={timestamp_s:.4f} s ({got})")
        buf = io.BytesIO()
        best.to_image().save(buf, format="PNG")
        return buf.getvalue()


def _scan(container: Any, stream: Any, seek_s: float, timestamp_s: float, tolerance_s: float) -> tuple[Any, float, float | None]:
    """Seek to the keyframe at or before `seek_s`, decode forward past `timestamp_s`:
    (closest frame, its distance in s, display time of the first frame decoded)."""
    time_base = stream.time_base
    container.seek(max(0, int(seek_s / time_base)), stream=stream, backward=True, any_frame=False)
    best, best_gap, first_t = None, math.inf, None
    for frame in container.decode(stream):
        if frame.pts is None:
            continue
        t = float(frame.pts * time_base)
        if first_t is None:
            first_t = t
        gap = abs(t - timestamp_s)
        if gap < best_gap:
            best, best_gap = frame, gap
        if t > timestamp_s + tolerance_s:
            break
    return best, best_gap, first_t


def _vectors(table: Any, key: str) -> Any:
    """A list-of-floats column as a float32 (rows, width) array."""
    np = require("numpy", "frames_from_lerobot")
    col = table.column(key).combine_chunks()
    width = len(col[0]) if len(col) else 0
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return flat.reshape(len(col), width)


ACTION_FORMS = ("raw", "gr1")


def _frame_step(dataset_fps: float, fps: float | None) -> int:
    """Dataset steps per row step: 1 at the dataset's rate, 2 for 10 fps from 20 fps, …"""
    if fps is None or fps == dataset_fps:
        return 1
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    ratio = dataset_fps / fps
    if ratio < 1 or abs(ratio - round(ratio)) > 1e-6:
        raise ValueError(
            f"fps={fps:g} does not divide the dataset's {dataset_fps:g} fps: rows can only use every n-th step "
            f"(fps = {dataset_fps:g}/n, e.g. {dataset_fps / 2:g})"
        )
    return round(ratio)


def _gr1_model_actions(data: _DataFile, rows: Any) -> Any:
    """Raw GR-1 steps (baseline step first) → DreamDojo's (T, 384) model input."""
    from dream.actions import gr1_actions

    assert data.states is not None
    return gr1_actions(data.actions[rows], data.states[rows[0]])


def _decode_frames(path: Path, timestamps: Sequence[float], tolerance_s: float) -> list[Any]:
    """RGB uint8 arrays of the frames closest to increasing `timestamps`, in one forward decode."""
    av = require("av", "frames_from_lerobot (video decoding)")
    out: list[Any] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        time_base = stream.time_base
        container.seek(max(0, int(timestamps[0] / time_base)), stream=stream, backward=True, any_frame=False)
        previous: tuple[float, Any] | None = None
        wanted = iter(timestamps)
        target = next(wanted, None)
        for frame in container.decode(stream):
            if frame.pts is None or target is None:
                continue
            t = float(frame.pts * time_base)
            while target is not None and t >= target:
                # The nearer of this frame and the one before it.
                best = (t, frame) if previous is None or abs(t - target) <= abs(previous[0] - target) else previous
                if abs(best[0] - target) > tolerance_s:
                    raise ValueError(f"video {path.name}: no frame at t={target:.4f} s (nearest {best[0]:.4f} s)")
                out.append(best[1].to_ndarray(format="rgb24"))
                target = next(wanted, None)
            previous = (t, frame)
            if target is None:
                break
        if target is not None and previous is not None and abs(previous[0] - target) <= tolerance_s:
            out.append(previous[1].to_ndarray(format="rgb24"))
            target = next(wanted, None)
    if target is not None:
        raise ValueError(f"video {path.name}: ends before t={target:.4f} s")
    return out


class _DataFile:
    """One data parquet, read once: per-episode slices of timestamps, actions (and images)."""

    def __init__(
        self, path: Path, *, action_key: str, image_key: str | None, state_key: str | None = None
    ) -> None:
        np = require("numpy", "frames_from_lerobot")
        pq = require("pyarrow.parquet", "frames_from_lerobot")
        columns = ["episode_index", "frame_index", "timestamp", action_key]
        if state_key:
            columns.append(state_key)
        if image_key:
            columns.append(image_key)
        has_tasks = "task_index" in pq.read_schema(path).names
        if has_tasks:
            columns.append("task_index")
        table = pq.read_table(path, columns=columns)
        episodes = table.column("episode_index").to_numpy()
        frames = table.column("frame_index").to_numpy()
        order = np.lexsort((frames, episodes))
        self.timestamps = table.column("timestamp").to_numpy()[order]
        self.actions = _vectors(table, action_key)[order]
        self.states = _vectors(table, state_key)[order] if state_key else None
        self.images = table.column(image_key).to_pylist() if image_key else None
        self.task_index = table.column("task_index").to_numpy()[order] if has_tasks else None
        self._order = order
        sorted_eps = episodes[order]
        uniq, starts, counts = np.unique(sorted_eps, return_index=True, return_counts=True)
        self.spans = {int(e): (int(s), int(s + c)) for e, s, c in zip(uniq, starts, counts, strict=True)}

    def image(self, row: int) -> Any:
        assert self.images is not None
        return self.images[int(self._order[row])]


def _check_not_a_mistyped_path(repo: str, root: Path) -> None:
    """A path that is not a folder is taken for a Hub repo id only when it looks like one
    and does not point into a local folder (`data/pusht` with ./data present is a typo)."""
    if root.exists():
        raise ValueError(f"frames_from_lerobot: {repo!r} is a file, not a LeRobot dataset folder")
    looks_local = repo.startswith((".", "/", "~")) or repo.count("/") != 1
    parent = root.parent
    if looks_local or (str(parent) not in ("", ".") and parent.is_dir()):
        raise ValueError(
            f"frames_from_lerobot: no folder {str(root)!r}, and {repo!r} is not a Hub repo id 'org/name' "
            "either (neither exists)"
        )


def _read_info(files: _Files) -> dict:
    """meta/info.json, with errors that say what is wrong with which file."""
    path = files.path("meta/info.json")
    if not path.is_file():
        raise ValueError(f"{files.repo}: not a LeRobot dataset (no meta/info.json in {path.parent.parent})")
    try:
        info = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); is the dataset complete?") from exc
    if not isinstance(info, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(info).__name__}")
    return info


def _is_depth_or_grey(feature: dict) -> bool:
    info = feature.get("info") or {}
    if feature.get("is_depth_map") or info.get("is_depth_map") or info.get("video.is_depth_map"):
        return True
    pix_fmt = str(info.get("video.pix_fmt") or "")
    return pix_fmt.startswith("gray")


def _default_camera(features: dict, cameras: list[str]) -> str:
    """The first RGB video camera (not a depth map, not grey), else the first video, else
    the first image camera."""
    videos = [k for k in cameras if features[k]["dtype"] == "video"]
    rgb = [k for k in videos if not _is_depth_or_grey(features[k])]
    return (rgb or videos or cameras)[0]


def _read_task_names(files: _Files, version: str) -> dict[int, str]:
    """task_index -> task text (meta/tasks.parquet for v3.0, meta/tasks.jsonl for v2.x)."""
    out: dict[int, str] = {}
    try:
        if version.startswith("v3"):
            pq = require("pyarrow.parquet", "frames_from_lerobot")
            table = pq.read_table(files.path("meta/tasks.parquet"))
            rows = table.to_pylist()
            for rec in rows:
                # lerobot writes the task text as the pandas index; tests write a `task` column.
                text = rec.get("task", rec.get("__index_level_0__"))
                if text is not None and rec.get("task_index") is not None:
                    out[int(rec["task_index"])] = str(text)
        else:
            for line in files.path("meta/tasks.jsonl").read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    out[int(rec["task_index"])] = str(rec["task"])
    except Exception:
        log.debug("no task table in %s; rows get their episode's tasks", files.repo, exc_info=True)
    return out


class LeRobotSource(IterableSource):
    """Rows from a LeRobot v3.0 or v2.1 dataset (see the module docstring)."""

    def __init__(
        self,
        repo: str | Path,
        *,
        camera: str | None = None,
        horizon: int | None = None,
        stride: int | None = None,
        chunk_size: int | None = None,
        action_dim: int | None = None,
        action_key: str = "action",
        episodes: Sequence[int] | None = None,
        revision: str | None = None,
        token: str | None = None,
        endpoint: str | None = None,
        cache_dir: str | None = None,
        pad: bool = False,
        fps: float | None = None,
        actions: str = "raw",
        state_key: str = "observation.state",
    ) -> None:
        require("pyarrow", "frames_from_lerobot")
        if actions not in ACTION_FORMS:
            raise ValueError(f"actions must be one of {ACTION_FORMS}, got {actions!r}")
        if horizon is not None and horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if stride is not None:
            if stride < 1:
                raise ValueError(f"stride must be >= 1, got {stride}")
            if horizon is None:
                raise ValueError("stride (one row per window) needs horizon (actions per window)")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if action_dim is not None and action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        self.repo = str(repo)
        self.files = _Files(self.repo, revision=revision, token=token, endpoint=endpoint, cache_dir=cache_dir)
        self.info = _read_info(self.files)
        self.version = str(self.info.get("codebase_version", ""))
        if not self.version.startswith(("v2", "v3")):
            raise ValueError(
                f"{self.repo}: unsupported LeRobot codebase_version {self.version!r} (want v2.x or v3.0)"
            )
        self.fps = float(self.info["fps"])
        features = self.info.get("features", {})
        if action_key not in features:
            raise ValueError(f"{self.repo}: no {action_key!r} feature; features are {sorted(features)}")
        self._init_model_rate(fps, actions, state_key, features)
        cameras = [k for k, f in features.items() if f.get("dtype") in ("video", "image")]
        if camera is None:
            if not cameras:
                raise ValueError(f"{self.repo}: the dataset has no camera (video or image feature)")
            camera = _default_camera(features, cameras)
        elif camera not in cameras:
            raise ValueError(f"{self.repo}: camera {camera!r} not found; cameras are {cameras}")
        self.camera = camera
        self.camera_is_video = features[camera]["dtype"] == "video"
        self.action_key = action_key
        self.horizon = horizon
        self.stride = stride
        self.chunk_size = chunk_size
        self.action_dim = action_dim
        all_episodes = self._read_episodes()
        if episodes is not None:
            wanted = {int(e) for e in episodes}
            missing = wanted - {ep.index for ep in all_episodes}
            if missing:
                raise ValueError(f"{self.repo}: no episode(s) {sorted(missing)}")
            all_episodes = [ep for ep in all_episodes if ep.index in wanted]
        self.episodes = all_episodes
        self.pad = bool(pad)
        self.rows_hint = sum(len(self._starts(ep)) for ep in self.episodes)
        self.task_names = _read_task_names(self.files, self.version)
        self._warn_dropped()

    def _init_model_rate(self, fps: float | None, actions: str, state_key: str, features: dict) -> None:
        """Subsampling (`fps`) and action conversion (`actions`): see the module docstring."""
        self.step = _frame_step(self.fps, None if fps is None else float(fps))
        self.row_fps = self.fps / self.step
        self.action_form = actions
        self.state_key: str | None = None
        if actions == "gr1":
            if state_key not in features:
                raise ValueError(
                    f"{self.repo}: actions='gr1' needs the proprio state {state_key!r}; features are {sorted(features)}"
                )
            self.state_key = state_key
        # Rows read one step before their start frame: the baseline of relative actions.
        self.prefix = 1 if actions == "gr1" else 0

    def _step_rows(self, lo: int, hi: int, start: int) -> Any:
        """Data-file rows of the row's steps, baseline step (if any) first: every `step`-th row."""
        np = require("numpy", "frames_from_lerobot")
        return np.arange(lo + start - self.prefix * self.step, hi, self.step)

    def _row_actions(self, data: _DataFile, rows: Any) -> Any:
        if self.action_form == "gr1":
            return _gr1_model_actions(data, rows)
        return data.actions[rows]

    # -- metadata -------------------------------------------------------------------

    def _read_episodes(self) -> list[_Episode]:
        if self.version.startswith("v3"):
            return self._read_episodes_v3()
        return self._read_episodes_v2()

    def _read_episodes_v3(self) -> list[_Episode]:
        pq = require("pyarrow.parquet", "frames_from_lerobot")
        data_tpl = self.info["data_path"]
        video_tpl = self.info.get("video_path")
        cam = self.camera
        out: list[_Episode] = []
        for rel in self.files.list("meta/episodes"):
            if not rel.endswith(".parquet"):
                continue
            table = pq.read_table(self.files.path(rel))
            names = set(table.column_names)
            for rec in table.to_pylist():
                video_file, video_from = None, 0.0
                if self.camera_is_video:
                    if f"videos/{cam}/chunk_index" not in names or not video_tpl:
                        raise ValueError(f"{self.repo}: episodes metadata has no video location for {cam!r}")
                    video_file = video_tpl.format(
                        video_key=cam,
                        chunk_index=rec[f"videos/{cam}/chunk_index"],
                        file_index=rec[f"videos/{cam}/file_index"],
                    )
                    video_from = float(rec.get(f"videos/{cam}/from_timestamp") or 0.0)
                out.append(
                    _Episode(
                        index=int(rec["episode_index"]),
                        length=int(rec["length"]),
                        tasks=tuple(str(t) for t in (rec.get("tasks") or ())),
                        data_file=data_tpl.format(
                            chunk_index=rec["data/chunk_index"], file_index=rec["data/file_index"]
                        ),
                        video_file=video_file,
                        video_from_s=video_from,
                    )
                )
        if not out:
            raise ValueError(f"{self.repo}: no episodes found under meta/episodes/")
        out.sort(key=lambda ep: ep.index)
        return out

    def _read_episodes_v2(self) -> list[_Episode]:
        data_tpl = self.info["data_path"]
        video_tpl = self.info.get("video_path")
        chunks_size = int(self.info.get("chunks_size") or 1000)
        out: list[_Episode] = []
        for line in self.files.path("meta/episodes.jsonl").read_text().splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            index = int(rec["episode_index"])
            chunk = index // chunks_size
            video_file = None
            if self.camera_is_video:
                if not video_tpl:
                    raise ValueError(f"{self.repo}: info.json has no video_path")
                video_file = video_tpl.format(episode_chunk=chunk, video_key=self.camera, episode_index=index)
            out.append(
                _Episode(
                    index=index,
                    length=int(rec["length"]),
                    tasks=tuple(str(t) for t in (rec.get("tasks") or ())),
                    data_file=data_tpl.format(episode_chunk=chunk, episode_index=index),
                    video_file=video_file,
                    video_from_s=0.0,
                )
            )
        out.sort(key=lambda ep: ep.index)
        return out

    # -- rows -----------------------------------------------------------------------

    def _num_actions(self, available: int) -> int:
        n = self.horizon if self.horizon is not None else available
        multiple = self.chunk_size or (4 if self.action_form == "gr1" else None)
        if multiple:
            n -= n % multiple
        return n

    def _starts(self, ep: _Episode) -> list[int]:
        """Start frames (dataset frame indices) of the episode's rows."""
        if self.stride is None:
            return [self.prefix * self.step]
        assert self.horizon is not None
        steps = len(range(0, ep.length, self.step))
        first = self.prefix
        # With pad, windows that run past the episode's end start rows too (padded in _iter_rows).
        last = steps - 1 if getattr(self, "pad", False) else steps - self.horizon
        return [s * self.step for s in range(first, last + 1, self.stride)] if last >= first else []

    def _row_id(self, ep: _Episode, start: int) -> str:
        if self.stride is None:
            return f"episode_{ep.index:06d}"
        return f"episode_{ep.index:06d}_from_{start:06d}"

    def __iter__(self) -> Iterator[SourceRow]:
        return self._iter_rows(())

    def _iter_rows(self, skip_ids: Collection[str]) -> Iterator[SourceRow]:
        """Rows in episode order; rows in `skip_ids` are neither read nor decoded."""
        np = require("numpy", "frames_from_lerobot")
        reader = _VideoReader()
        data: _DataFile | None = None
        data_name: str | None = None
        data_error: str | None = None
        tolerance = 0.5 / self.fps
        try:
            for ep in self.episodes:
                for start in self._starts(ep):
                    row_id = self._row_id(ep, start)
                    metadata: dict[str, Any] = {
                        "dataset": self.repo,
                        "codebase_version": self.version,
                        "episode_index": ep.index,
                        "start_frame_index": start,
                        "camera": self.camera,
                        "task": ep.tasks[0] if len(ep.tasks) == 1 else list(ep.tasks),
                        "fps": self.fps,
                    }
                    if row_id in skip_ids:
                        yield SourceRow(row_id, b"", b"", metadata)
                        continue
                    if ep.data_file != data_name:
                        data_name, data, data_error = ep.data_file, None, None
                        try:
                            data = _DataFile(
                                self.files.path(ep.data_file),
                                action_key=self.action_key,
                                image_key=None if self.camera_is_video else self.camera,
                                state_key=self.state_key,
                            )
                        except FileNotFoundError:
                            data_error = f"data file {ep.data_file!r} is missing from {self.repo}"
                        except Exception as exc:
                            data_error = f"cannot read data file {ep.data_file!r} of {self.repo}: {exc}"
                    if data is None:
                        yield SourceRow(row_id, b"", b"", metadata, error=data_error)
                        continue
                    span = data.spans.get(ep.index)
                    if span is None:
                        yield SourceRow(
                            row_id,
                            b"",
                            b"",
                            metadata,
                            error=f"episode {ep.index} has no rows in {ep.data_file!r}",
                        )
                        continue
                    lo, hi = span
                    steps = self._step_rows(lo, hi, start)
                    available = len(steps) - self.prefix
                    n = self._num_actions(available)
                    task = self._task_at(data, lo + start)
                    if task is not None:
                        metadata["task"] = task
                    padded = n - available if self.pad and n > available > 0 else 0
                    if n <= 0 or n - padded > available:
                        yield SourceRow(
                            row_id,
                            b"",
                            b"",
                            metadata,
                            error=(
                                f"episode {ep.index} has {available} action(s) from frame {start}; "
                                f"the row needs {n if n > 0 else 'at least one'}"
                                + (
                                    f" (a multiple of chunk_size={self.chunk_size})"
                                    if self.chunk_size
                                    else ""
                                )
                            ),
                        )
                        continue
                    try:
                        actions = self._row_actions(data, steps[: n - padded + self.prefix])
                    except ValueError as exc:
                        yield SourceRow(row_id, b"", b"", metadata, error=f"actions: {exc}")
                        continue
                    if self.pad:
                        # As lerobot pads a window past the episode end: the last action repeated,
                        # flagged in `action_is_pad`.
                        actions = np.concatenate([actions, np.repeat(actions[-1:], padded, axis=0)])
                        metadata["action_is_pad"] = [False] * (n - padded) + [True] * padded
                        metadata["num_padded"] = int(padded)
                    if self.action_dim is not None and actions.shape[1] != self.action_dim:
                        if actions.shape[1] > self.action_dim:
                            actions = actions[:, : self.action_dim]
                        else:
                            pad = np.zeros((n, self.action_dim - actions.shape[1]), np.float32)
                            actions = np.concatenate([actions, pad], axis=1)
                    timestamp = float(data.timestamps[lo + start])
                    metadata["timestamp"] = timestamp
                    metadata["num_actions"] = int(n)
                    if self.step != 1 or self.prefix:
                        metadata["fps"] = self.row_fps
                        metadata["dataset_fps"] = self.fps
                        metadata["actions"] = self.action_form
                    try:
                        if self.camera_is_video:
                            assert ep.video_file is not None
                            frame = reader.frame_png(
                                self.files.path(ep.video_file), ep.video_from_s + timestamp, tolerance
                            )
                        else:
                            from dream.io.sources.hf import encode_frame_png

                            frame = encode_frame_png(data.image(lo + start))
                    except Exception as exc:
                        where = f"video {ep.video_file}" if self.camera_is_video else f"data file {ep.data_file}"
                        yield SourceRow(
                            row_id, b"", b"", metadata,
                            error=f"start frame from camera {self.camera!r} ({where} of {self.repo}): {exc}",
                        )
                        continue
                    buf = io.BytesIO()
                    np.save(buf, np.ascontiguousarray(actions, dtype=np.float32), allow_pickle=False)
                    yield SourceRow(row_id, frame, buf.getvalue(), metadata)
        finally:
            reader.close()

    def _task_at(self, data: _DataFile, row: int) -> str | None:
        """The task of the row's start frame (tasks can change within an episode)."""
        if data.task_index is None or not self.task_names:
            return None
        return self.task_names.get(int(data.task_index[row]))

    def _warn_dropped(self) -> None:
        """Say when windows past an episode's end are not rows (lerobot would pad them)."""
        if self.stride is None or self.pad or self.horizon is None:
            return
        possible = sum(
            len(range(self.prefix, len(range(0, ep.length, self.step)), self.stride)) for ep in self.episodes
        )
        dropped = possible - self.rows_hint
        if self.rows_hint == 0 and self.episodes:
            longest = max(ep.length for ep in self.episodes)
            warnings.warn(
                f"{self.repo}: horizon {self.horizon} is longer than every episode (the longest has {longest} "
                "frames), so there are 0 rows; pass pad=True to pad windows as lerobot does, or a shorter horizon",
                UserWarning,
                stacklevel=4,
            )
        elif dropped:
            warnings.warn(
                f"{self.repo}: {dropped} window(s) of horizon {self.horizon} would run past their episode's end "
                f"and are not rows (the last frames of each episode start none); pass pad=True to pad them "
                "as lerobot does",
                UserWarning,
                stacklevel=4,
            )

    def row_frames(self, metadata: dict[str, Any], count: int) -> list[Any]:
        """The `count` video frames of a row from its start frame on, at the row's rate (RGB uint8).

        The ground truth a rollout from that row is compared with (``dream eval``). Needs a
        video camera.
        """
        if not self.camera_is_video:
            raise ValueError(f"{self.repo}: row_frames needs a video camera, {self.camera!r} is an image feature")
        ep = next((e for e in self.episodes if e.index == metadata["episode_index"]), None)
        if ep is None or ep.video_file is None:
            raise ValueError(f"{self.repo}: no video for episode {metadata.get('episode_index')!r}")
        last = int(metadata["start_frame_index"]) + self.step * (count - 1)
        if last >= ep.length:
            raise ValueError(
                f"episode {ep.index} has {ep.length} frames; {count} frames from frame "
                f"{metadata['start_frame_index']} at every {self.step} step(s) end at frame {last}"
            )
        start = ep.video_from_s + float(metadata["timestamp"])
        times = [start + i * self.step / self.fps for i in range(count)]
        return _decode_frames(self.files.path(ep.video_file), times, 0.5 / self.fps)

    def __repr__(self) -> str:
        return f"LeRobotSource({self.repo!r}, {self.version}, camera={self.camera!r}, rows={self.rows_hint})"


def frames_from_lerobot(
    repo: str | Path,
    *,
    camera: str | None = None,
    horizon: int | None = None,
    stride: int | None = None,
    chunk_size: int | None = None,
    action_dim: int | None = None,
    action_key: str = "action",
    episodes: Sequence[int] | None = None,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    cache_dir: str | None = None,
    pad: bool = False,
    fps: float | None = None,
    actions: str = "raw",
    state_key: str = "observation.state",
) -> LeRobotSource:
    """Rows from a LeRobot v3.0 or v2.1 dataset: a local folder or a Hub repo id.

    repo:       local dataset root (with meta/info.json) or "org/name" on the Hub (files
                are downloaded one by one as the rows need them).
    camera:     video (or image) feature to take the start frame from; default the first
                video feature.
    horizon:    actions per row (T). Default: all of the episode's actions.
    stride:     one row per window of `horizon` actions starting every `stride` frames
                (needs horizon); default one row per episode, starting at frame 0.
    chunk_size: trim T down to a multiple of this (the spec's chunk_size), if given.
    action_dim: pad with zeros / trim the action vectors to this width, if given
                (e.g. a 29-dim GR-1 action to the 384-dim spec). Default: unchanged.
    episodes:   restrict to these episode indices.
    pad:        with stride, also start windows that run past the episode's end, padded
                as lerobot pads them (the last action repeated; metadata `action_is_pad`
                and `num_padded`). Default False: such windows are not rows, and a
                warning says how many (or that a horizon longer than every episode gives
                0 rows).
    fps:        the rate rows are at: every n-th step of the dataset when fps = dataset
                fps / n (e.g. 10 on a 20 fps GR-1 dataset), for start frames and
                actions; horizon and stride count steps at this rate. Default: the
                dataset's rate.
    actions:    "raw" (the `action_key` vectors as stored) or "gr1": DreamDojo model
                input built from raw 44-dim GR-1 vectors by `dream.actions.gr1_actions`,
                with the state from `state_key`; rows then start one step in (that step
                is the baseline) and T is trimmed to a multiple of 4 (or of chunk_size).
    Row ids: `episode_000012`, or `episode_000012_from_000040` with windows. Metadata:
    dataset, codebase_version, episode_index, start_frame_index, camera, task, fps,
    timestamp, num_actions. `rows_hint` is exact (from the episode metadata). Needs
    pyarrow and av (and huggingface_hub for Hub repos).
    """
    return LeRobotSource(
        repo,
        camera=camera,
        horizon=horizon,
        stride=stride,
        chunk_size=chunk_size,
        action_dim=action_dim,
        action_key=action_key,
        episodes=episodes,
        revision=revision,
        token=token,
        endpoint=endpoint,
        cache_dir=cache_dir,
        pad=pad,
        fps=fps,
        actions=actions,
        state_key=state_key,
    )
