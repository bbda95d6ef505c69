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
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dream.io._records import require
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
        time_base = stream.time_base
        container.seek(max(0, int(timestamp_s / time_base)), stream=stream, backward=True, any_frame=False)
        best, best_gap = None, math.inf
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * time_base)
            gap = abs(t - timestamp_s)
            if gap < best_gap:
                best, best_gap = frame, gap
            if t > timestamp_s + tolerance_s:
                break
        if best is None or best_gap > tolerance_s:
            got = "no frame" if best is None else f"nearest frame {best_gap:.4f} s away"
            raise ValueError(f"video {path.name}: no frame at t={timestamp_s:.4f} s ({got})")
        buf = io.BytesIO()
        best.to_image().save(buf, format="PNG")
        return buf.getvalue()


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
        table = pq.read_table(path, columns=columns)
        episodes = table.column("episode_index").to_numpy()
        frames = table.column("frame_index").to_numpy()
        order = np.lexsort((frames, episodes))
        self.timestamps = table.column("timestamp").to_numpy()[order]
        self.actions = _vectors(table, action_key)[order]
        self.states = _vectors(table, state_key)[order] if state_key else None
        self.images = table.column(image_key).to_pylist() if image_key else None
        self._order = order
        sorted_eps = episodes[order]
        uniq, starts, counts = np.unique(sorted_eps, return_index=True, return_counts=True)
        self.spans = {int(e): (int(s), int(s + c)) for e, s, c in zip(uniq, starts, counts, strict=True)}

    def image(self, row: int) -> Any:
        assert self.images is not None
        return self.images[int(self._order[row])]


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
        self.info = json.loads(self.files.path("meta/info.json").read_text())
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
            videos = [k for k in cameras if features[k]["dtype"] == "video"]
            if not cameras:
                raise ValueError(f"{self.repo}: the dataset has no camera (video or image feature)")
            camera = (videos or cameras)[0]
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
        self.rows_hint = sum(len(self._starts(ep)) for ep in self.episodes)

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
        first, last = self.prefix, steps - self.horizon
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
                        except Exception as exc:
                            data_error = f"cannot read data file {ep.data_file!r}: {exc}"
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
                    if n <= 0 or n > available:
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
                        actions = self._row_actions(data, steps[: n + self.prefix])
                    except ValueError as exc:
                        yield SourceRow(row_id, b"", b"", metadata, error=f"actions: {exc}")
                        continue
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
                        yield SourceRow(row_id, b"", b"", metadata, error=f"start frame: {exc}")
                        continue
                    buf = io.BytesIO()
                    np.save(buf, np.ascontiguousarray(actions, dtype=np.float32), allow_pickle=False)
                    yield SourceRow(row_id, frame, buf.getvalue(), metadata)
        finally:
            reader.close()

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
        fps=fps,
        actions=actions,
        state_key=state_key,
    )
