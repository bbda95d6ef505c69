"""Helpers for the dream.io tests: a real tiny predictor, data factories, a local Hub stand-in.

Everything here does real work: PNGs are encoded with PIL, actions with numpy, mp4s with
PyAV, LeRobot trees are laid out as the LeRobot docs describe, and the Hub stand-in speaks
the few endpoints `huggingface_hub` calls, so the real client runs against it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
from collections.abc import Iterable, Iterator
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np
from PIL import Image

from dream.bulk.rows import RowOutcome
from dream.errors import InputValidationError, RateLimitError, ServerError
from dream.io import IterableSource, RolloutRecord, RolloutSink, SourceRow

# The contract of the tiny test "spec".
ACTION_DIM = 2
CHUNK = 4
FRAME_HW = (16, 16)


# -- encoding helpers --------------------------------------------------------------------


def png_bytes(color: tuple[int, int, int] = (10, 20, 30), hw: tuple[int, int] = FRAME_HW) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((*hw, 3), color, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def npy_bytes(array: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    return buf.getvalue()


def actions_array(t: int = 8, dim: int = ACTION_DIM, offset: float = 0.0) -> np.ndarray:
    return (np.arange(t * dim, dtype=np.float32).reshape(t, dim) / 100.0 + offset).astype(np.float32)


def encode_mp4(frames: np.ndarray, fps: int = 10) -> bytes:
    """(N, H, W, 3) uint8 → H.264 mp4 bytes, encoded with PyAV."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "threads": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def decode_mp4(data: bytes) -> np.ndarray:
    import av

    with av.open(io.BytesIO(data)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


# -- a real predictor --------------------------------------------------------------------


def content_id(frame_bytes: bytes, actions_bytes: bytes) -> str:
    return hashlib.sha256(frame_bytes + b"|" + actions_bytes).hexdigest()[:16]


class TinyEngine:
    """A real (if tiny) world model stand-in: validates the inputs like the engine does,
    then renders T+1 frames that fade from the start frame and encodes them as an mp4.

    `source`: rows it will see, so calls can be counted per row id (`calls`).
    `fail_plan`: row id → exceptions raised on that row's successive calls.
    """

    def __init__(
        self,
        *,
        source: Iterable[SourceRow] | None = None,
        price_per_frame_usd: float = 0.001,
        fail_plan: dict[str, list] | None = None,
    ) -> None:
        self.price = price_per_frame_usd
        self.fail_plan = {k: list(v) for k, v in (fail_plan or {}).items()}
        self.row_of: dict[str, str] = {}
        if source is not None:
            for row in source:
                self.row_of[content_id(row.frame_bytes, row.actions_bytes)] = str(row.row_id)
        self.calls: dict[str, int] = {}
        self.keys: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def total_calls(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def __call__(self, frame_bytes: bytes, actions_bytes: bytes, idempotency_key: str) -> RowOutcome:
        row = self.row_of.get(content_id(frame_bytes, actions_bytes), "?")
        with self._lock:
            self.calls[row] = self.calls.get(row, 0) + 1
            self.keys.setdefault(row, set()).add(idempotency_key)
            plan = self.fail_plan.get(row)
            exc = plan.pop(0) if plan else None
        if exc is not None:
            raise exc
        frame = self._frame(frame_bytes)
        actions = self._actions(actions_bytes)
        t = actions.shape[0]
        weights = np.linspace(1.0, 0.5, t + 1, dtype=np.float32)[:, None, None, None]
        frames = (frame[None].astype(np.float32) * weights).astype(np.uint8)
        return RowOutcome(
            mp4_bytes=encode_mp4(frames),
            request_id="req-" + idempotency_key[-12:],
            engine_wall_ms=1.5,
            cost_usd=(t + 1) * self.price,
            frames=t + 1,
            seed=0,
            num_steps=None,
        )

    @staticmethod
    def _frame(data: bytes) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                return np.asarray(image.convert("RGB"))
        except Exception as exc:
            raise InputValidationError(f"start frame could not be decoded as an image: {exc}") from None

    @staticmethod
    def _actions(data: bytes) -> np.ndarray:
        try:
            actions = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as exc:
            raise InputValidationError(f"actions are not a readable .npy array: {exc}") from None
        if actions.ndim != 2:
            raise InputValidationError(f"actions must be 2-D (T, action_dim); got shape {actions.shape}")
        if actions.shape[1] != ACTION_DIM:
            raise InputValidationError(
                f"actions action_dim mismatch: model expects {ACTION_DIM}, got array with shape {actions.shape}"
            )
        if actions.shape[0] % CHUNK:
            raise InputValidationError(
                f"actions length T={actions.shape[0]} is not a multiple of the model's chunk_size={CHUNK}"
            )
        if not np.all(np.isfinite(actions)):
            raise InputValidationError("actions contain NaN or inf")
        return actions


def transient(kind: str, retry_after: float | None = None) -> Exception:
    if kind == "429":
        return RateLimitError("slow down", retry_after=retry_after)
    return ServerError("upstream hiccup", status_code=503)


# -- sources and sinks for tests -----------------------------------------------------------


class ListSource(IterableSource):
    """A custom source (as users write them): rows from a list of (id, frame, actions)."""

    def __init__(self, rows: Iterable[tuple[Any, bytes, bytes]], *, hint: bool = True) -> None:
        self._rows = list(rows)
        if hint:
            self.rows_hint = len(self._rows)
        self.pulled = 0

    def __iter__(self) -> Iterator[SourceRow]:
        for row_id, frame, actions in self._rows:
            self.pulled += 1
            yield SourceRow(
                row_id=row_id, frame_bytes=frame, actions_bytes=actions, metadata={"origin": "list"}
            )


class MemorySink(RolloutSink):
    """A custom sink that only implements the required methods (like the docs' example)."""

    def __init__(self) -> None:
        self.records: dict[str, RolloutRecord] = {}
        self.lock = threading.Lock()
        self.finalized = 0

    def write(self, record: RolloutRecord) -> None:
        with self.lock:
            self.records[record.row_id] = record

    def finalize(self) -> str:
        self.finalized += 1
        return f"memory://{len(self.records)}"


def write_episode_dir(root: Path, n: int, *, t: int = 8, prefix: str = "ep") -> list[str]:
    """n frame/actions pairs named <prefix>_NNN.png/.npy; returns the row ids."""
    root.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        row_id = f"{prefix}_{i:03d}"
        (root / f"{row_id}.png").write_bytes(png_bytes((i % 256, 100, 200)))
        (root / f"{row_id}.npy").write_bytes(npy_bytes(actions_array(t, offset=i)))
        ids.append(row_id)
    return ids


# -- LeRobot dataset factories ---------------------------------------------------------------

LR_HW = (64, 64)  # SVT-AV1 wants at least 64x64
LR_CAMERA = "observation.images.top"
LR_ACTION_DIM = 3


def lerobot_color(episode: int, frame: int) -> tuple[int, int, int]:
    return (20 + 45 * (episode % 5), 10 + 12 * (frame % 20), 128)


def lerobot_action(episode: int, frame: int) -> list[float]:
    return [float(episode), frame / 100.0, -frame / 100.0]


def _encode_video(path: Path, frames: list[np.ndarray], *, fps: int, codec: str) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = LR_HW[1], LR_HW[0]
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "g": "4", "threads": "1"}
        elif codec == "libx265":
            # x265's default open GOP, with short GOPs so that frames precede their keyframe
            # in display order several times per video.
            stream.options = {"preset": "ultrafast", "x265-params": "keyint=10:min-keyint=10:log-level=error"}
        else:
            stream.options = {"preset": "12", "g": "4", "crf": "30"}
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _feature_block(fps: int) -> dict:
    return {
        LR_CAMERA: {
            "dtype": "video",
            "shape": [LR_HW[0], LR_HW[1], 3],
            "names": ["height", "width", "channels"],
            "info": {"video.fps": fps, "video.codec": "test", "video.pix_fmt": "yuv420p"},
        },
        "observation.state": {"dtype": "float32", "shape": [LR_ACTION_DIM], "names": None},
        "action": {"dtype": "float32", "shape": [LR_ACTION_DIM], "names": ["a", "b", "c"]},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }


def _data_table(episodes: list[tuple[int, int]], start_index: int, fps: int) -> Any:
    import pyarrow as pa

    rows: dict[str, list] = {
        k: [] for k in ("index", "episode_index", "frame_index", "timestamp", "task_index")
    }
    actions, states = [], []
    index = start_index
    for ep, length in episodes:
        for f in range(length):
            rows["index"].append(index)
            rows["episode_index"].append(ep)
            rows["frame_index"].append(f)
            rows["timestamp"].append(np.float32(f / fps))
            rows["task_index"].append(0)
            actions.append(lerobot_action(ep, f))
            states.append([0.0] * LR_ACTION_DIM)
            index += 1
    vec = pa.list_(pa.float32(), LR_ACTION_DIM)
    return pa.table(
        {
            "observation.state": pa.array(states, type=vec),
            "action": pa.array(actions, type=vec),
            "timestamp": pa.array(rows["timestamp"], type=pa.float32()),
            "frame_index": pa.array(rows["frame_index"], type=pa.int64()),
            "episode_index": pa.array(rows["episode_index"], type=pa.int64()),
            "index": pa.array(rows["index"], type=pa.int64()),
            "task_index": pa.array(rows["task_index"], type=pa.int64()),
        }
    )


def make_lerobot_v3(
    root: Path, lengths: list[int], *, episodes_per_file: int = 3, fps: int = 10, codec: str = "libx264"
) -> Path:
    """A LeRobot v3.0 tree: several episodes per data file and per concatenated video file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    info = {
        "codebase_version": "v3.0",
        "robot_type": "test_bot",
        "total_episodes": len(lengths),
        "total_frames": sum(lengths),
        "total_tasks": 1,
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": fps,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": _feature_block(fps),
    }
    (root / "meta").mkdir(exist_ok=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    pq.write_table(pa.table({"task_index": [0], "task": ["push the block"]}), root / "meta" / "tasks.parquet")
    ep_rows: list[dict] = []
    index = 0
    for file_index, start in enumerate(range(0, len(lengths), episodes_per_file)):
        group = [(e, lengths[e]) for e in range(start, min(start + episodes_per_file, len(lengths)))]
        (root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(
            _data_table(group, index, fps),
            root / info["data_path"].format(chunk_index=0, file_index=file_index),
        )
        frames, offset = [], 0.0
        for ep, length in group:
            ep_rows.append(
                {
                    "episode_index": ep,
                    "tasks": ["push the block"],
                    "length": length,
                    "data/chunk_index": 0,
                    "data/file_index": file_index,
                    "dataset_from_index": index,
                    "dataset_to_index": index + length,
                    f"videos/{LR_CAMERA}/chunk_index": 0,
                    f"videos/{LR_CAMERA}/file_index": file_index,
                    f"videos/{LR_CAMERA}/from_timestamp": offset,
                    f"videos/{LR_CAMERA}/to_timestamp": offset + length / fps,
                    "meta/episodes/chunk_index": 0,
                    "meta/episodes/file_index": 0,
                }
            )
            for f in range(length):
                frames.append(np.full((*LR_HW, 3), lerobot_color(ep, f), np.uint8))
            index += length
            offset += length / fps
        _encode_video(
            root / info["video_path"].format(video_key=LR_CAMERA, chunk_index=0, file_index=file_index),
            frames,
            fps=fps,
            codec=codec,
        )
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pylist(ep_rows), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    )
    return root


def make_lerobot_v21(root: Path, lengths: list[int], *, fps: int = 10, codec: str = "libx264") -> Path:
    """A LeRobot v2.1 tree: one data parquet and one mp4 per episode, JSONL metadata."""
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    info = {
        "codebase_version": "v2.1",
        "robot_type": "test_bot",
        "total_episodes": len(lengths),
        "total_frames": sum(lengths),
        "total_tasks": 1,
        "total_videos": len(lengths),
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": fps,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": _feature_block(fps),
    }
    (root / "meta").mkdir(exist_ok=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "push the block"}) + "\n")
    lines, index = [], 0
    for ep, length in enumerate(lengths):
        lines.append(json.dumps({"episode_index": ep, "tasks": ["push the block"], "length": length}))
        data_path = root / info["data_path"].format(episode_chunk=0, episode_index=ep)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_data_table([(ep, length)], index, fps), data_path)
        index += length
        frames = [np.full((*LR_HW, 3), lerobot_color(ep, f), np.uint8) for f in range(length)]
        _encode_video(
            root / info["video_path"].format(episode_chunk=0, video_key=LR_CAMERA, episode_index=ep),
            frames,
            fps=fps,
            codec=codec,
        )
    (root / "meta" / "episodes.jsonl").write_text("\n".join(lines) + "\n")
    return root


# -- a local stand-in for the Hugging Face Hub endpoints huggingface_hub calls ----------------


class _Repo:
    def __init__(self, private: bool = False) -> None:
        self.files: dict[str, bytes] = {}
        self.sha = hashlib.sha1(b"init").hexdigest()
        self.private = private
        self.card_data: dict | None = None
        self.commits: list[dict] = []
        self.tags: dict[str, str] = {}  # tag -> commit sha


class HubStandIn:
    """Threaded HTTP server answering the Hub API calls our code makes, in memory.

    Endpoints: repo create, dataset info, tree listing, validate-yaml, preupload (every file
    "regular", so content travels inline in the commit), commit (NDJSON), and file
    resolve (HEAD / GET), tag create / delete. Unknown routes answer 404 and are logged in `unknown`.
    """

    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.lock = threading.Lock()
        self.unknown: list[str] = []
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub._dispatch(self, "GET")

            def do_HEAD(self) -> None:
                hub._dispatch(self, "HEAD")

            def do_POST(self) -> None:
                hub._dispatch(self, "POST")

            def do_DELETE(self) -> None:
                hub._dispatch(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> HubStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- test-side helpers --------------------------------------------------------------

    def create(self, repo_id: str, *, card_data: dict | None = None) -> _Repo:
        with self.lock:
            repo = self.repos.setdefault(repo_id, _Repo())
            repo.card_data = card_data
            return repo

    def put_folder(self, repo_id: str, folder: Path) -> None:
        repo = self.create(repo_id)
        with self.lock:
            for path in folder.rglob("*"):
                if path.is_file():
                    repo.files[path.relative_to(folder).as_posix()] = path.read_bytes()
            repo.sha = hashlib.sha1(repr(sorted(repo.files)).encode()).hexdigest()

    # -- HTTP ------------------------------------------------------------------------------

    def _send(
        self, h: BaseHTTPRequestHandler, status: int, body: Any = b"", headers: dict | None = None
    ) -> None:
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _not_found(self, h: BaseHTTPRequestHandler, code: str = "RepoNotFound") -> None:
        self._send(h, 404, {"error": f"{code}"}, {"X-Error-Code": code, "X-Error-Message": code})

    def _body(self, h: BaseHTTPRequestHandler) -> bytes:
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length else b""

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        path = unquote(url.path)
        query = parse_qs(url.query)
        self.requests.append((method, path))
        body = self._body(h) if method == "POST" else b""
        try:
            self._route(h, method, path, query, body)
        except Exception as exc:  # surface server bugs as 500s, not hangs
            self._send(h, 500, {"error": repr(exc)})

    def _route(self, h: BaseHTTPRequestHandler, method: str, path: str, query: dict, body: bytes) -> None:
        if method == "POST" and path == "/api/repos/create":
            payload = json.loads(body)
            repo_id = (
                f"{payload['organization']}/{payload['name']}"
                if payload.get("organization")
                else payload["name"]
            )
            with self.lock:
                existed = repo_id in self.repos
                self.repos.setdefault(repo_id, _Repo(private=payload.get("visibility") == "private"))
            if existed:
                return self._send(h, 409, {"error": "You already created this dataset repo",
                                           "url": f"{self.endpoint}/datasets/{repo_id}"})
            return self._send(h, 200, {"url": f"{self.endpoint}/datasets/{repo_id}", "name": repo_id})
        if method == "POST" and path == "/api/validate-yaml":
            return self._send(h, 200, {"errors": [], "warnings": []})

        m = re.match(
            r"^/api/datasets/([^/]+/[^/]+)(?:/(preupload|commit|tree|revision|tag)/([^/]+)(?:/(.*))?)?$", path
        )
        if m:
            repo_id, action, _rev, rest = m.groups()
            repo = self.repos.get(repo_id)
            if repo is None:
                return self._not_found(h)
            if action is None or action == "revision":
                return self._send(h, 200, self._info(repo_id, repo))
            if action == "tree" and method == "GET":
                prefix = (rest or "").strip("/")
                with self.lock:
                    files = sorted(repo.files.items())
                entries = []
                for name, data in files:
                    if prefix and not name.startswith(prefix + "/"):
                        continue
                    entries.append(
                        {
                            "type": "file",
                            "path": name,
                            "size": len(data),
                            "oid": hashlib.sha1(data).hexdigest(),
                        }
                    )
                if not query.get("recursive"):
                    depth = prefix.count("/") + 1 if prefix else 0
                    seen, flat = set(), []
                    for e in entries:
                        parts = e["path"].split("/")
                        if len(parts) - 1 == depth:
                            flat.append(e)
                        elif "/".join(parts[: depth + 1]) not in seen:
                            seen.add("/".join(parts[: depth + 1]))
                            flat.append(
                                {"type": "directory", "path": "/".join(parts[: depth + 1]), "oid": "0" * 40}
                            )
                    entries = flat
                return self._send(h, 200, entries)
            if action == "preupload" and method == "POST":
                files = json.loads(body)["files"]
                return self._send(
                    h,
                    200,
                    {
                        "files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                        ]
                    },
                )
            if action == "commit" and method == "POST":
                return self._commit(h, repo_id, repo, body)
            if action == "tag" and method == "POST":  # create a tag at revision _rev (the head here)
                tag = json.loads(body)["tag"]
                with self.lock:
                    if tag in repo.tags:
                        return self._send(h, 409, {"error": f"Tag {tag} already exists"})
                    repo.tags[tag] = repo.sha
                return self._send(h, 200, {})
            if action == "tag" and method == "DELETE":
                with self.lock:
                    if repo.tags.pop(unquote(_rev), None) is None:
                        return self._not_found(h, "RevisionNotFound")
                return self._send(h, 200, {})
        m = re.match(r"^/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m and method in ("GET", "HEAD"):
            repo_id, _rev, name = m.groups()
            repo = self.repos.get(repo_id)
            if repo is None:
                return self._not_found(h)
            with self.lock:
                data = repo.files.get(name)
                sha = repo.sha
            if data is None:
                return self._not_found(h, "EntryNotFound")
            etag = '"' + hashlib.sha1(data).hexdigest() + '"'
            return self._send(
                h, 200, data, {"X-Repo-Commit": sha, "ETag": etag, "Content-Type": "application/octet-stream"}
            )
        self.unknown.append(f"{method} {path}")
        self._send(h, 404, {"error": f"stand-in does not serve {method} {path}"})

    def _info(self, repo_id: str, repo: _Repo) -> dict:
        with self.lock:
            return {
                "id": repo_id,
                "sha": repo.sha,
                "private": repo.private,
                "siblings": [{"rfilename": name} for name in sorted(repo.files)],
                "cardData": repo.card_data,
                "tags": [],
                "downloads": 0,
                "likes": 0,
            }

    def _commit(self, h: BaseHTTPRequestHandler, repo_id: str, repo: _Repo, body: bytes) -> None:
        ops = [json.loads(line) for line in body.splitlines() if line.strip()]
        with self.lock:
            changed: list[str] = []
            for op in ops:
                value = op["value"]
                if op["key"] == "file":
                    repo.files[value["path"]] = base64.b64decode(value["content"])
                    changed.append("+" + value["path"])
                elif op["key"] == "deletedFile":
                    repo.files.pop(value["path"], None)
                    changed.append("-" + value["path"])
                elif op["key"] == "header":
                    summary = value.get("summary")
                else:
                    raise ValueError(f"unsupported commit op {op['key']}")
            repo.sha = hashlib.sha1((repo.sha + json.dumps(changed)).encode()).hexdigest()
            repo.commits.append({"summary": summary, "changes": changed})
        self._send(
            h,
            200,
            {
                "commitUrl": f"{self.endpoint}/datasets/{repo_id}/commit/{repo.sha}",
                "commitOid": repo.sha,
                "pullRequestUrl": None,
            },
        )
