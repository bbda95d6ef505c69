"""LeRobotRolloutSink: rollouts as a LeRobot dataset (codebase v3.0), crash-safe and resumable.

What `LeRobotDataset` / `StreamingLeRobotDataset` (lerobot 0.4+) read, written with pyarrow
and PyAV (the `lerobot` package is not needed):

    <root>/meta/info.json                               features, fps, totals, path templates
    <root>/meta/stats.json                              dataset statistics (LeRobot's normalisers)
    <root>/meta/tasks.parquet                           task text -> task_index
    <root>/meta/episodes/chunk-CCC/file-FFF.parquet     one row per episode (+ provenance)
    <root>/data/chunk-CCC/file-FFF.parquet              one row per frame
    <root>/videos/<camera>/chunk-CCC/file-FFF.mp4       the episodes of a file, back to back

One rollout is one episode. Frame t is paired with action t, as LeRobot pairs them (the
observation the action was taken from), so an episode of T actions has T frames: the
rollout's last frame (the outcome of the last action, which no action follows) is left
out. Columns: the camera (video), `action` (float32, the row's actions bit for bit),
`timestamp` (frame_index / fps), `frame_index`, `episode_index`, `index`, `task_index`.
The episode's task is `task=`, else the source row's `task` (what `frames_from_lerobot`
puts there), else "<spec> rollout". Each episode row also carries its provenance in
`dream/*` columns: the source row id, spec, sampling seed / steps / guidance, request id,
the parent row (`parent_row_id`, else `parent`, else `source_episode` of the source
metadata), the perturbation (`perturbation` of the source metadata, JSON) and the whole
source metadata (JSON).

How rows become files: rows are buffered (in arrival order, so episode indices stay
dense whatever order rows finish in) and written `episodes_per_file` at a time (or
when `max_buffer_mb` of video is buffered, and at `finalize`) as one new file of each
kind. The rollouts' H.264 streams are copied into the file without re-encoding (the
dataset's frames are the rollout's frames, bit for bit); rollouts whose streams cannot
be joined (other encoder settings, B-frames) are re-encoded (libx264 4:4:4, CRF 8).

Crash safety: each file is written to a temporary name, fsync'd and renamed; the
episodes file goes last and is the commit point; info.json and stats.json follow. A
sink opened on the folder removes temporary files and data / video files that no
episodes file names (a write killed before its commit), and rewrites info.json and
stats.json from the episodes files, so a run killed at any instant resumes with no
duplicate, missing or corrupt episode. LeRobot can load the folder at any instant:
info.json always describes a committed prefix. Rows still buffered when a run is killed
were never committed: `finished_row_ids()` does not list them and a resumed run makes
them again.

A row whose id is already an episode of the dataset cannot be replaced in place:
writing it again raises ValueError (write a changed run to a new root). Failed rows go
to `meta/dream_failures.jsonl` (one JSON line each). With `push_to_hub=True`, finalize
uploads the folder to the dataset repo `repo_id` and tags the commit `v3.0`, as LeRobot
does (LeRobot resolves a Hub dataset through that tag).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from dream._extras import require
from dream.bulk.records import check_row_id, entry_for, entry_to_line, iter_journal_lines
from dream.io.sinks import _lerobot_stats as lstats
from dream.io.types import RolloutRecord, RolloutSink

__all__ = ["LeRobotRolloutSink"]

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk folder (LeRobot's default)
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
FAILURES_FILE = "meta/dream_failures.jsonl"
DEFAULT_CAMERA = "observation.image"
_TMP_MARK = ".dream-tmp-"
_PARENT_KEYS = ("parent_row_id", "parent", "source_episode")
_SCALAR_FEATURES = {
    "timestamp": "float32",
    "frame_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "task_index": "int64",
}
# Provenance columns of the episodes table (and their Arrow types).
_PROVENANCE = {
    "dream/row_id": "string",
    "dream/spec": "string",
    "dream/sampling_seed": "int64",
    "dream/num_steps": "int64",
    "dream/guidance": "float64",
    "dream/request_id": "string",
    "dream/parent_row_id": "string",
    "dream/perturbation": "string",
    "dream/source_metadata": "string",
}
_RECORD_KEYS = frozenset(
    {"request_id", "engine_wall_ms", "estimated_charge_usd", "status", "spec", "error", "attempts", "frames",
     "sampling_seed", "num_steps", "guidance"}
)


@dataclass
class _Clip:
    """One rollout's video, parsed: what the file writer and the statistics need."""

    mp4: bytes
    frames: int  # frames in the rollout (T + 1)
    height: int
    width: int
    fps: Fraction
    time_base: Fraction
    extradata: bytes
    copyable: bool  # packets in display order, keyframe first: the stream can be cut and joined
    sampled: Any  # unused (kept None): the frames are decoded by the statistics worker


@dataclass
class _Pending:
    """A row waiting for its file."""

    row_id: str
    actions: Any  # float32 (T, A)
    clip: _Clip
    task: str
    provenance: dict[str, Any]
    image_stats: Any  # a Future of the episode's image statistics (decoding runs beside the caller)
    params: dict[str, Any] = field(default_factory=dict)


def _fsync_write(path: Path, data: bytes, fsync: bool) -> None:
    """`data` into `path` atomically: a temporary name, fsync, rename."""
    tmp = path.with_name(f".{path.name}{_TMP_MARK}{uuid.uuid4().hex}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _publish(tmp: Path, path: Path, fsync: bool) -> None:
    """Rename a finished temporary file into place (after fsync'ing it)."""
    if fsync:
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def _temp_for(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}{_TMP_MARK}{uuid.uuid4().hex}")


def _read_clip(mp4: bytes, actions: int) -> _Clip:
    """Parse a rollout mp4 without decoding it; ValueError names what is wrong with it."""
    av = require("av", "RolloutSink.lerobot (video)")
    try:
        with av.open(io.BytesIO(mp4)) as container:
            if not container.streams.video:
                raise ValueError("the rollout mp4 has no video stream")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            time_base = Fraction(stream.time_base)
            rate = stream.average_rate or stream.guessed_rate or ctx.framerate
            extradata = bytes(ctx.extradata or b"")
            codec = ctx.name
            height, width = ctx.height, ctx.width
            packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
    except av.error.FFmpegError as exc:
        raise ValueError(f"the rollout mp4 cannot be read: {exc}") from exc
    if len(packets) != actions + 1:
        raise ValueError(f"the rollout has {len(packets)} frames for {actions} actions (expected {actions + 1})")
    pts = [p for p, _ in packets]
    copyable = (
        codec == "h264"
        and None not in pts
        and all(b > a for a, b in itertools.pairwise(pts))
        and packets[0][1]
    )
    fps = Fraction(rate) if rate else Fraction(0)
    return _Clip(mp4, len(packets), height, width, fps, time_base, extradata, bool(copyable), None)


def _episode_image_stats(mp4: bytes, length: int) -> dict[str, Any]:
    """Image statistics of a rollout's first `length` frames (decodes the video)."""
    import numpy as np

    av = require("av", "RolloutSink.lerobot (video)")
    require("av.video.reformatter", "RolloutSink.lerobot (video)")
    wanted = set(lstats.sampled_frame_indices(length))
    # One reformatter for every frame: a frame's own converter is built anew each time.
    to_rgb = av.video.reformatter.VideoReformatter()
    sampled = []
    try:
        with av.open(io.BytesIO(mp4)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i >= length:
                    break
                if i in wanted:
                    sampled.append(to_rgb.reformat(frame, format="rgb24").to_ndarray())
    except av.error.FFmpegError as exc:
        raise ValueError(f"the rollout mp4 cannot be decoded: {exc}") from exc
    if len(sampled) != len(wanted):
        raise ValueError(f"the rollout decodes to fewer than {length} frames")
    return lstats.image_stats(np.stack(sampled))


def _parent_of(metadata: dict[str, Any]) -> str | None:
    for key in _PARENT_KEYS:
        value = metadata.get(key)
        if value not in (None, ""):
            return str(value)
    return None


def _opt_json(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


class LeRobotRolloutSink(RolloutSink, kind="lerobot"):
    """Rollouts as episodes of a LeRobot v3.0 dataset at `root` (module docstring).

    repo_id:           the dataset's id ("org/name"), used by LeRobot and for `push_to_hub`.
    fps:               frame rate of the dataset; default: the rollouts' own (the spec's).
    task:              task text of every episode; default: each source row's `task`.
    camera_key:        the video feature's name; default: the source row's `camera`
                       (frames_from_lerobot), else "observation.image".
    push_to_hub:       upload to the Hub dataset repo `repo_id` at finalize (needs
                       huggingface_hub); `private`, `token`, `endpoint` go to it.
    episodes_per_file: episodes per data / video / episodes file (also how many finished
                       rows a kill can lose at most; a resumed run redoes them).
    max_buffer_mb:     write a file early once this much rollout video is buffered.
    fsync:             make every file durable before the next one is committed.
    `write` and `write_failure` are thread-safe.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        repo_id: str,
        fps: int | None = None,
        task: str | None = None,
        camera_key: str | None = None,
        push_to_hub: bool = False,
        private: bool = False,
        token: str | None = None,
        endpoint: str | None = None,
        episodes_per_file: int = 100,
        max_buffer_mb: float = 64.0,
        robot_type: str | None = None,
        fsync: bool = True,
    ) -> None:
        require("pyarrow", "RolloutSink.lerobot")
        require("av", "RolloutSink.lerobot (video)")
        if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise ValueError(f"RolloutSink.lerobot needs repo_id='org/name', got {repo_id!r}")
        if fps is not None and (isinstance(fps, bool) or int(fps) != fps or fps <= 0):
            raise ValueError(f"fps must be a positive whole number (LeRobot stores an int), got {fps!r}")
        if int(episodes_per_file) < 1:
            raise ValueError(f"episodes_per_file must be >= 1, got {episodes_per_file}")
        if camera_key is not None and (not camera_key or "/" in camera_key):
            raise ValueError(f"camera_key must be a feature name without '/', got {camera_key!r}")
        if push_to_hub:
            require("huggingface_hub", "RolloutSink.lerobot(push_to_hub=True)")
        self.root = Path(root)
        self.repo_id = repo_id
        self.fps = int(fps) if fps is not None else None
        self.task = task
        self.camera_key = camera_key
        self.push_to_hub = push_to_hub
        self.private = private
        self.token = token
        self.endpoint = endpoint
        self.episodes_per_file = int(episodes_per_file)
        self.max_buffer_bytes = int(max_buffer_mb * 1024 * 1024)
        self.robot_type = robot_type
        self.fsync = fsync
        self._lock = threading.RLock()
        self._buffer: list[_Pending] = []
        self._buffer_bytes = 0
        self._failures = None  # the failure journal, opened on first use
        self._pool: Any = None  # decodes rollouts for the image statistics
        self._finalized_uri: str | None = None
        self._pushed = False
        self.root.mkdir(parents=True, exist_ok=True)
        self._load()

    # -- state on disk ------------------------------------------------------------------

    def _path(self, template: str, segment: int, **extra: Any) -> Path:
        chunk, file = divmod(segment, CHUNKS_SIZE)
        return self.root / template.format(chunk_index=chunk, file_index=file, **extra)

    def _segment_of(self, path: Path) -> int | None:
        """The segment number of a chunk-CCC/file-FFF.<ext> path, None for other names."""
        try:
            chunk = int(path.parent.name.removeprefix("chunk-"))
            file = int(path.stem.removeprefix("file-"))
        except ValueError:
            return None
        if not path.parent.name.startswith("chunk-") or not path.stem.startswith("file-"):
            return None
        return chunk * CHUNKS_SIZE + file

    def _load(self) -> None:
        """Recover from a killed writer and read what the dataset holds."""
        pq = require("pyarrow.parquet", "RolloutSink.lerobot")
        for leftover in self.root.rglob(f"*{_TMP_MARK}*"):
            leftover.unlink(missing_ok=True)
        info_path = self.root / "meta" / "info.json"
        self.info: dict[str, Any] | None = json.loads(info_path.read_text()) if info_path.is_file() else None
        if self.info is not None and not str(self.info.get("codebase_version", "")).startswith("v3"):
            raise ValueError(
                f"{self.root}: a LeRobot {self.info.get('codebase_version')} dataset; RolloutSink.lerobot "
                "appends only to codebase v3.0 datasets"
            )
        episode_files = sorted(
            (seg, p) for p in (self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet")
            if (seg := self._segment_of(p)) is not None
        )
        committed = {seg for seg, _ in episode_files}
        # Data and video files no episodes file names: a write killed before its commit.
        for pattern in ("data/chunk-*/file-*.parquet", "videos/*/chunk-*/file-*.mp4"):
            for path in self.root.glob(pattern):
                if self._segment_of(path) not in committed:
                    path.unlink()
        self.episodes: list[dict[str, Any]] = []
        for _, path in episode_files:
            self.episodes.extend(pq.read_table(path).to_pylist())
        self.episodes.sort(key=lambda e: e["episode_index"])
        indices = [e["episode_index"] for e in self.episodes]
        if indices != list(range(len(indices))):
            raise ValueError(f"{self.root}: episode indices are not 0…{len(indices) - 1} (found {indices[:10]}…)")
        self.next_segment = max(committed) + 1 if committed else 0
        self.total_frames = sum(int(e["length"]) for e in self.episodes)
        self.tasks = self._read_tasks()
        self.row_ids = {e.get("dream/row_id"): e for e in self.episodes if e.get("dream/row_id")}
        if self.info is not None:
            self.camera_key = self.camera_key or next(
                (k for k, f in self.info["features"].items() if f.get("dtype") == "video"), None
            )
            if self.fps is None:
                self.fps = int(self.info["fps"])
            if self.episodes and (
                self.info.get("total_episodes") != len(self.episodes)
                or self.info.get("total_frames") != self.total_frames
                or not (self.root / "meta" / "stats.json").is_file()
            ):
                self._write_info_and_stats()  # the last commit's info / stats never landed

    def _read_tasks(self) -> dict[str, int]:
        path = self.root / "meta" / "tasks.parquet"
        if not path.is_file():
            return {}
        pq = require("pyarrow.parquet", "RolloutSink.lerobot")
        out: dict[str, int] = {}
        for row in pq.read_table(path).to_pylist():
            text = row.get("task", row.get("__index_level_0__"))
            if text is not None:
                out[str(text)] = int(row["task_index"])
        return out

    def finished_rows(self) -> dict[str, dict[str, Any]]:
        """Rows that are episodes of the dataset (or buffered for one) -> their sampling parameters."""
        with self._lock:
            out = {
                row_id: {
                    "spec": e.get("dream/spec"),
                    "sampling_seed": e.get("dream/sampling_seed"),
                    "num_steps": e.get("dream/num_steps"),
                    "guidance": e.get("dream/guidance"),
                }
                for row_id, e in self.row_ids.items()
            }
            out.update({p.row_id: dict(p.params) for p in self._buffer})
            for params in out.values():
                if params.get("spec") is None:
                    params.pop("spec", None)
            return out

    def finished_row_ids(self) -> set[str]:
        return set(self.finished_rows())

    # -- writing ------------------------------------------------------------------------

    def write(self, record: RolloutRecord) -> None:
        import numpy as np

        row_id = check_row_id(record.row_id)
        raw = getattr(record, "actions_bytes", b"") or b""
        if not raw:
            raise ValueError(
                f"row {row_id!r}: RolloutSink.lerobot needs the row's actions (RolloutRecord.actions_bytes); "
                "predict_many and dream.ray pass them"
            )
        try:
            actions = np.load(io.BytesIO(raw), allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"row {row_id!r}: the actions are not a .npy array: {exc}") from exc
        if actions.ndim != 2 or actions.shape[0] < 1 or not np.issubdtype(actions.dtype, np.number):
            raise ValueError(f"row {row_id!r}: actions must be a numeric (T, action_dim) array, got "
                             f"{actions.dtype} {actions.shape}")
        actions = np.ascontiguousarray(actions, dtype=np.float32)
        try:
            clip = _read_clip(record.mp4_bytes, actions.shape[0])
        except ValueError as exc:
            raise ValueError(f"row {row_id!r}: {exc}") from exc
        metadata = dict(record.metadata or {})
        source = {k: v for k, v in metadata.items() if k not in _RECORD_KEYS}
        task = self.task or metadata.get("task")
        if isinstance(task, (list, tuple)):
            task = task[0] if task else None
        task = str(task) if task not in (None, "") else f"{metadata.get('spec') or 'dream'} rollout"
        perturbation = metadata.get("perturbation")
        provenance = {
            "dream/row_id": row_id,
            "dream/spec": metadata.get("spec"),
            "dream/sampling_seed": metadata.get("sampling_seed"),
            "dream/num_steps": metadata.get("num_steps"),
            "dream/guidance": metadata.get("guidance"),
            "dream/request_id": metadata.get("request_id"),
            "dream/parent_row_id": _parent_of(metadata),
            "dream/perturbation": _opt_json(perturbation),
            "dream/source_metadata": json.loads(entry_to_line(source)),
        }
        provenance["dream/source_metadata"] = json.dumps(provenance["dream/source_metadata"], ensure_ascii=False)
        params = {k: metadata.get(k) for k in ("spec", "sampling_seed", "num_steps", "guidance") if k in metadata}
        stats = self._stats_pool().submit(_episode_image_stats, record.mp4_bytes, actions.shape[0])
        pending = _Pending(row_id, actions, clip, task, provenance, stats, params)
        with self._lock:
            if row_id in self.row_ids or any(p.row_id == row_id for p in self._buffer):
                where = self.row_ids.get(row_id, {}).get("episode_index", "a buffered episode")
                raise ValueError(
                    f"row {row_id!r} is already episode {where} of {self.root}; LeRobot episodes cannot be "
                    "replaced in place: write to a new root (or resume, which skips it)"
                )
            self._check_shape(pending)
            self._buffer.append(pending)
            self._buffer_bytes += len(record.mp4_bytes)
            self._finalized_uri = None
            if len(self._buffer) >= self.episodes_per_file or self._buffer_bytes >= self.max_buffer_bytes:
                self._flush()

    def _check_shape(self, pending: _Pending) -> None:
        """Every episode must match the dataset's features (set by the first one)."""
        clip = pending.clip
        fps = clip.fps
        if self.fps is None:
            if not fps or fps.denominator != 1:
                raise ValueError(f"row {pending.row_id!r}: the rollout's frame rate {fps} is not a whole number; "
                                 "pass fps=")
            self.fps = int(fps)
        first = self._buffer[0] if self._buffer else None
        if self.info is not None:
            camera = self.camera_key
            feature = self.info["features"].get(camera or "", {})
            want_hw = tuple(feature.get("shape", (None, None))[:2])
            want_dim = tuple(self.info["features"].get("action", {}).get("shape", (None,)))
        elif first is not None:
            want_hw = (first.clip.height, first.clip.width)
            want_dim = (first.actions.shape[1],)
        else:
            return
        if (clip.height, clip.width) != want_hw:
            raise ValueError(f"row {pending.row_id!r}: frames are {clip.height}x{clip.width}, the dataset's are "
                             f"{want_hw[0]}x{want_hw[1]}")
        if (pending.actions.shape[1],) != want_dim:
            raise ValueError(f"row {pending.row_id!r}: actions have {pending.actions.shape[1]} dims, the dataset's "
                             f"have {want_dim[0]}")

    def write_failure(self, record: RolloutRecord) -> None:
        entry = entry_for(str(record.row_id), record.metadata, file_name="", failed=True)
        line = entry_to_line(entry)
        with self._lock:
            if self._failures is None:
                path = self.root / FAILURES_FILE
                path.parent.mkdir(parents=True, exist_ok=True)
                self._failures = open(path, "ab")  # noqa: SIM115 (kept open across writes)
            self._failures.write(line)
            self._failures.flush()
            if self.fsync:
                os.fsync(self._failures.fileno())

    def failures(self) -> list[dict[str, Any]]:
        """Failed rows recorded here (last entry per row), minus rows that are episodes now."""
        path = self.root / FAILURES_FILE
        if not path.is_file():
            return []
        last = {entry["row_id"]: entry for _, entry in iter_journal_lines(path)}
        return [e for row_id, e in last.items() if row_id not in self.row_ids]

    def _stats_pool(self) -> Any:
        """Two threads that decode rollouts for the image statistics while the caller goes on
        (PyAV decodes without the GIL)."""
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dream-lerobot-stats")
        return self._pool

    # -- one file of each kind ---------------------------------------------------------------

    def _camera(self) -> str:
        if self.camera_key is None:
            source_camera = None
            if self._buffer:
                meta = json.loads(self._buffer[0].provenance["dream/source_metadata"] or "{}")
                source_camera = meta.get("camera")
            self.camera_key = str(source_camera) if isinstance(source_camera, str) and source_camera else DEFAULT_CAMERA
        return self.camera_key

    def _flush(self) -> None:
        """Write the buffer as one new data / video / episodes file (the episodes file commits)."""
        if not self._buffer:
            return
        import numpy as np

        pa = require("pyarrow", "RolloutSink.lerobot")
        pq = require("pyarrow.parquet", "RolloutSink.lerobot")
        camera = self._camera()
        segment = self.next_segment
        pending = list(self._buffer)
        fps = self.fps
        assert fps is not None
        if self.info is None:
            self.info = self._new_info(pending[0], camera)
        first_episode = len(self.episodes)
        image_stats = {}
        for p in pending:
            try:
                image_stats[p.row_id] = p.image_stats.result()
            except ValueError as exc:
                self._buffer.remove(p)  # the rest of the file can still be written
                raise ValueError(f"row {p.row_id!r}: {exc}") from exc
        # Tasks first: a task index in a data file must always resolve.
        new_tasks = [p.task for p in pending if p.task not in self.tasks]
        if new_tasks:
            for text in dict.fromkeys(new_tasks):
                self.tasks[text] = len(self.tasks)
            _fsync_write(self.root / "meta" / "tasks.parquet", self._tasks_parquet(), self.fsync)

        # Data file.
        columns: dict[str, list[Any]] = {k: [] for k in ("action", *_SCALAR_FEATURES)}
        episodes: list[dict[str, Any]] = []
        start = self.total_frames
        for offset, p in enumerate(pending):
            length = p.actions.shape[0]
            frame_index = np.arange(length, dtype=np.int64)
            columns["action"].append(p.actions)
            columns["timestamp"].append((frame_index / fps).astype(np.float32))
            columns["frame_index"].append(frame_index)
            columns["episode_index"].append(np.full(length, first_episode + offset, np.int64))
            columns["index"].append(np.arange(start, start + length, dtype=np.int64))
            columns["task_index"].append(np.full(length, self.tasks[p.task], np.int64))
            episodes.append({"length": length, "from": start})
            start += length
        arrays = {k: np.concatenate(v) for k, v in columns.items()}
        dim = arrays["action"].shape[1]
        table = pa.Table.from_arrays(
            [pa.FixedSizeListArray.from_arrays(pa.array(arrays["action"].reshape(-1)), dim),
             *(pa.array(arrays[k]) for k in _SCALAR_FEATURES)],
            names=["action", *_SCALAR_FEATURES],
        )
        data_path = self._path(DATA_PATH, segment)
        tmp = _temp_for(data_path)
        try:
            pq.write_table(table, tmp, compression="snappy")
            _publish(tmp, data_path, self.fsync)
        finally:
            tmp.unlink(missing_ok=True)

        # Video file.
        video_path = self._path(VIDEO_PATH, segment, video_key=camera)
        spans = self._write_video(video_path, pending, fps)

        # Episodes file: the commit.
        chunk, file = divmod(segment, CHUNKS_SIZE)
        rows = []
        for offset, (p, ep, (t0, t1)) in enumerate(zip(pending, episodes, spans, strict=True)):
            index = first_episode + offset
            stats = {
                "action": lstats.vector_stats(p.actions),
                camera: image_stats[p.row_id],
                "timestamp": lstats.vector_stats(arrays["timestamp"][ep["from"] - self.total_frames:][: ep["length"]]),
                "frame_index": lstats.vector_stats(np.arange(ep["length"], dtype=np.int64)),
                "episode_index": lstats.vector_stats(np.full(ep["length"], index, np.int64)),
                "index": lstats.vector_stats(np.arange(ep["from"], ep["from"] + ep["length"], dtype=np.int64)),
                "task_index": lstats.vector_stats(np.full(ep["length"], self.tasks[p.task], np.int64)),
            }
            row: dict[str, Any] = {
                "episode_index": index,
                "tasks": [p.task],
                "length": ep["length"],
                "data/chunk_index": chunk,
                "data/file_index": file,
                "dataset_from_index": ep["from"],
                "dataset_to_index": ep["from"] + ep["length"],
                f"videos/{camera}/chunk_index": chunk,
                f"videos/{camera}/file_index": file,
                f"videos/{camera}/from_timestamp": t0,
                f"videos/{camera}/to_timestamp": t1,
                "meta/episodes/chunk_index": chunk,
                "meta/episodes/file_index": file,
            }
            for feature, values in lstats.to_json(stats).items():
                for key, value in values.items():
                    row[f"stats/{feature}/{key}"] = value
            row.update(p.provenance)
            rows.append(row)
        episodes_table = pa.Table.from_pylist(rows, schema=self._episodes_schema(rows[0], camera))
        episodes_path = self._path(EPISODES_PATH, segment)
        tmp = _temp_for(episodes_path)
        try:
            pq.write_table(episodes_table, tmp, compression="snappy")
            _publish(tmp, episodes_path, self.fsync)
        finally:
            tmp.unlink(missing_ok=True)

        # Committed: update what we know, then info.json and stats.json.
        self.next_segment = segment + 1
        self.total_frames = start
        for row in rows:
            self.episodes.append(row)
            self.row_ids[row["dream/row_id"]] = row
        self._buffer.clear()
        self._buffer_bytes = 0
        self._write_info_and_stats()

    def _write_video(self, path: Path, pending: list[_Pending], fps: int) -> list[tuple[float, float]]:
        """The episodes' frames back to back in one mp4; returns each one's (from, to) timestamps."""
        spans: list[tuple[float, float]] = []
        frames = 0
        for p in pending:
            length = p.actions.shape[0]
            spans.append((frames / fps, (frames + length) / fps))
            frames += length
        tmp = _temp_for(path)
        try:
            first = pending[0].clip
            joinable = all(
                p.clip.copyable and p.clip.extradata == first.extradata and p.clip.time_base == first.time_base
                and (Fraction(1, fps) / p.clip.time_base).denominator == 1
                for p in pending
            )
            if joinable:
                _join_streams(tmp, pending, fps)
            else:
                _encode_frames(tmp, pending, fps)
            _publish(tmp, path, self.fsync)
        finally:
            tmp.unlink(missing_ok=True)
        return spans

    # -- metadata files ------------------------------------------------------------------

    def _new_info(self, first: _Pending, camera: str) -> dict[str, Any]:
        clip = first.clip
        features: dict[str, Any] = {
            camera: {
                "dtype": "video",
                "shape": [clip.height, clip.width, 3],
                "names": ["height", "width", "channels"],
                "info": {
                    "video.height": clip.height,
                    "video.width": clip.width,
                    "video.codec": "h264",
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "video.fps": self.fps,
                    "video.channels": 3,
                    "has_audio": False,
                },
            },
            "action": {"dtype": "float32", "shape": [int(first.actions.shape[1])], "names": None},
        }
        for name, dtype in _SCALAR_FEATURES.items():
            features[name] = {"dtype": dtype, "shape": [1], "names": None}
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": 0,
            "total_frames": 0,
            "total_tasks": 0,
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200,
            "fps": self.fps,
            "splits": {},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": features,
        }

    def _tasks_parquet(self) -> bytes:
        """meta/tasks.parquet as LeRobot writes it: a pandas frame indexed by the task text."""
        pa = require("pyarrow", "RolloutSink.lerobot")
        pq = require("pyarrow.parquet", "RolloutSink.lerobot")
        ordered = sorted(self.tasks.items(), key=lambda item: item[1])
        pandas_meta = {
            "index_columns": ["task"],
            "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                                "metadata": {"encoding": "UTF-8"}}],
            "columns": [
                {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
                 "metadata": None},
                {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
                 "metadata": None},
            ],
            "creator": {"library": "pyarrow", "version": pa.__version__},
            "pandas_version": "2.2.0",
        }
        # from_arrays: pa.table() checks for a pandas DataFrame, which imports pandas (seconds).
        table = pa.Table.from_arrays(
            [pa.array([i for _, i in ordered], pa.int64()), pa.array([t for t, _ in ordered], pa.string())],
            schema=pa.schema([("task_index", pa.int64()), ("task", pa.string())],
                             metadata={b"pandas": json.dumps(pandas_meta).encode()}),
        )
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()

    def _episodes_schema(self, row: dict[str, Any], camera: str) -> Any:
        pa = require("pyarrow", "RolloutSink.lerobot")
        fields = []
        for key, value in row.items():
            if key in _PROVENANCE:
                fields.append(pa.field(key, getattr(pa, _PROVENANCE[key])() if _PROVENANCE[key] != "string"
                                       else pa.string()))
            elif key == "tasks":
                fields.append(pa.field(key, pa.list_(pa.string())))
            elif key.startswith("stats/"):
                fields.append(pa.field(key, _nested_type(value, key.endswith("/count"))))
            elif key.endswith("_timestamp"):
                fields.append(pa.field(key, pa.float64()))
            else:
                fields.append(pa.field(key, pa.int64()))
        return pa.schema(fields)

    def _write_info_and_stats(self) -> None:
        assert self.info is not None
        self.info["total_episodes"] = len(self.episodes)
        self.info["total_frames"] = self.total_frames
        self.info["total_tasks"] = len(self.tasks)
        self.info["splits"] = {"train": f"0:{len(self.episodes)}"} if self.episodes else {}
        per_episode = []
        for e in self.episodes:
            stats: dict[str, dict[str, Any]] = {}
            for key, value in e.items():
                if key.startswith("stats/") and value is not None:
                    _, feature_stat = key.split("/", 1)
                    feature, stat = feature_stat.rsplit("/", 1)
                    stats.setdefault(feature, {})[stat] = value
            per_episode.append(lstats.from_json(stats))
        if per_episode:
            stats_json = lstats.to_json(lstats.aggregate(per_episode))
            _fsync_write(self.root / "meta" / "stats.json",
                         json.dumps(stats_json, indent=4).encode(), self.fsync)
        _fsync_write(self.root / "meta" / "info.json",
                     json.dumps(self.info, indent=4, ensure_ascii=False).encode(), self.fsync)

    # -- the end ------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            if self._failures is not None:
                self._failures.close()
                self._failures = None

    def finalize(self) -> str:
        """Write the buffered episodes, then (push_to_hub) upload; idempotent. Returns the root
        (or `hf://datasets/<repo_id>` after an upload)."""
        with self._lock:
            if self._finalized_uri is not None and not self._buffer:
                return self._finalized_uri
            self._flush()
            if self._pool is not None:  # every statistic was collected by the flush
                self._pool.shutdown(wait=True)
                self._pool = None
            if self.info is None:
                # No episode yet: an empty dataset cannot be described (no camera shape), so
                # only the failures file may exist.
                uri = str(self.root.resolve())
            elif self.push_to_hub:
                self._upload()
                uri = f"hf://datasets/{self.repo_id}"
            else:
                uri = str(self.root.resolve())
            self._finalized_uri = uri
            return uri

    def _upload(self) -> None:
        hub = require("huggingface_hub", "RolloutSink.lerobot(push_to_hub=True)")
        api = hub.HfApi(endpoint=self.endpoint, token=self.token)
        api.create_repo(self.repo_id, repo_type="dataset", private=self.private, exist_ok=True)
        card = self.root / "README.md"
        if not card.exists():
            _fsync_write(card, self._card().encode(), self.fsync)
        api.upload_folder(
            repo_id=self.repo_id, repo_type="dataset", folder_path=str(self.root),
            ignore_patterns=[f"*{_TMP_MARK}*"],
            commit_message=f"dream-engine: {len(self.episodes)} episodes ({self.total_frames} frames)",
        )
        # The tag must name this commit: move it when an earlier push made it.
        try:
            api.create_tag(self.repo_id, tag=CODEBASE_VERSION, repo_type="dataset")
        except hub.errors.HfHubHTTPError as exc:
            if getattr(getattr(exc, "response", None), "status_code", None) != 409:
                raise
            api.delete_tag(self.repo_id, tag=CODEBASE_VERSION, repo_type="dataset")
            api.create_tag(self.repo_id, tag=CODEBASE_VERSION, repo_type="dataset")
        self._pushed = True

    def _card(self) -> str:
        from dream._version import __version__

        return (
            "---\nlicense: cc-by-4.0\ntask_categories:\n- robotics\ntags:\n- LeRobot\n- synthetic\n"
            "- world-model\n- dream-engine\nconfigs:\n- config_name: default\n  data_files: data/*/*.parquet\n---\n\n"
            f"# {self.repo_id}\n\nA [LeRobot](https://github.com/huggingface/lerobot) dataset (codebase "
            f"{CODEBASE_VERSION}) of world-model rollouts written by dream-engine {__version__}: one episode "
            "per rollout, frame t paired with action t. Each episode's provenance (source row, spec, seed, "
            "parent, perturbation) is in the `dream/*` columns of `meta/episodes/`.\n"
        )

    def __repr__(self) -> str:
        return f"LeRobotRolloutSink({str(self.root)!r}, repo_id={self.repo_id!r})"


def _nested_type(value: Any, integer: bool) -> Any:
    """The Arrow type of a nested list of numbers."""
    pa = require("pyarrow", "RolloutSink.lerobot")
    if isinstance(value, list):
        return pa.list_(_nested_type(value[0] if value else 0, integer))
    return pa.int64() if integer else pa.float64()


def _join_streams(target: Path, pending: list[_Pending], fps: int) -> None:
    """Copy the rollouts' H.264 packets (their first T frames) into one mp4, back to back."""
    av = require("av", "RolloutSink.lerobot (video)")
    ticks_per_frame = int(Fraction(1, fps) / pending[0].clip.time_base)
    with av.open(str(target), mode="w", format="mp4") as out, av.open(io.BytesIO(pending[0].clip.mp4)) as template:
        stream = out.add_stream_from_template(template.streams.video[0])
        stream.time_base = template.streams.video[0].time_base
        frames = 0
        for p in pending:
            length = p.actions.shape[0]
            with av.open(io.BytesIO(p.clip.mp4)) as src:
                packets = [pkt for pkt in src.demux(src.streams.video[0]) if pkt.size]
                base = packets[0].pts
                for pkt in packets[:length]:
                    shift = frames * ticks_per_frame - base
                    pkt.pts += shift
                    pkt.dts = pkt.pts
                    pkt.stream = stream
                    out.mux(pkt)
            frames += length


def _encode_frames(target: Path, pending: list[_Pending], fps: int) -> None:
    """Re-encode the rollouts' first T frames into one mp4 (a keyframe at each episode start)."""
    av = require("av", "RolloutSink.lerobot (video)")
    first = pending[0].clip
    with av.open(str(target), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "8", "preset": "fast", "bframes": "0",
                                                              "forced-idr": "1"})
        stream.width, stream.height = first.width + first.width % 2, first.height + first.height % 2
        stream.pix_fmt = "yuv444p"  # full-resolution colour: the frames were already subsampled once
        stream.codec_context.time_base = Fraction(1, fps)
        frames = 0
        for p in pending:
            length = p.actions.shape[0]
            with av.open(io.BytesIO(p.clip.mp4)) as src:
                for i, frame in enumerate(src.decode(video=0)):
                    if i >= length:
                        break
                    image = frame.to_ndarray(format="rgb24")
                    if image.shape[0] % 2 or image.shape[1] % 2:
                        import numpy as np

                        image = np.pad(image, ((0, image.shape[0] % 2), (0, image.shape[1] % 2), (0, 0)), mode="edge")
                    out_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                    out_frame.pts = frames
                    out_frame.time_base = Fraction(1, fps)
                    if i == 0:
                        out_frame.pict_type = av.video.frame.PictureType.I
                    frames += 1
                    for packet in stream.encode(out_frame):
                        out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)

