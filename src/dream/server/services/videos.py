"""Stored rollout videos and the signed, expiring URLs that serve them without auth.

A ``video_url`` is ``<base>/v1/videos/<video_id>.mp4?expires=<epoch s>&sig=<hex>``
where ``sig = HMAC-SHA256(secret, "<video_id>:<expires>")``. The 0.5.0 client fetches it
with a plain GET and no Authorization (wire-protocol §8), so the signature is the only
credential: it names one video and stops working at ``expires``. Several replicas that
share a data folder must share the secret (``--url-secret``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from dream.errors import AuthError, ModelNotFoundError

_VIDEO_ID = re.compile(r"^vid_[0-9a-f]{32}$")
_RESULT_ID = re.compile(r"^res_[0-9a-f]{32}$")


class VideoNotFound(ModelNotFoundError):
    """No such video (HTTP 404)."""


class VideoStore:
    """mp4 files in a folder, kept `retain_s` seconds after they were written."""

    def __init__(
        self,
        directory: str | Path | None,
        *,
        secret: bytes,
        ttl_s: int = 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="dream-videos-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self._secret = secret
        self.ttl_s = int(ttl_s)
        self.retain_s = max(self.ttl_s * 2, 600)
        self._clock = clock
        self._lock = threading.Lock()
        self._last_prune = 0.0
        # Stored idempotent results (mp4 / tar bodies) live here too, not in the database;
        # the server sets this to the longest idempotency TTL (plus slack).
        self.result_retain_s = 24 * 3600.0 + 3600.0

    def _path(self, video_id: str) -> Path:
        if not _VIDEO_ID.match(video_id):
            raise VideoNotFound(f"no video {video_id!r}")
        return self.directory / f"{video_id}.mp4"

    def put(self, video_id: str, mp4: bytes) -> None:
        """Write atomically (temp file + rename), so a reader never sees half a video."""
        self._write(self._path(video_id), mp4)

    def put_result(self, body: bytes, *, rid: str | None = None) -> str:
        """Keep an idempotent result's body (for `result_retain_s`); returns its id.

        `rid`: keep it under this id (a body made again on a replica that lacked it)."""
        from dream.server.services.db import new_id

        rid = rid or new_id("res")
        if not _RESULT_ID.match(rid):
            raise ValueError(f"not a result id: {rid!r}")
        self._write(self.directory / f"{rid}.bin", body)
        return rid

    def read_result(self, rid: str) -> bytes | None:
        """A stored result's body; None when it is gone (pruned, or kept by another replica's folder)."""
        if not _RESULT_ID.match(rid):
            return None
        try:
            return (self.directory / f"{rid}.bin").read_bytes()
        except FileNotFoundError:
            return None

    def _write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._maybe_prune()

    def exists(self, video_id: str) -> bool:
        try:
            return self._path(video_id).is_file()
        except VideoNotFound:
            return False

    def read(self, video_id: str) -> bytes:
        path = self._path(video_id)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise VideoNotFound(f"video {video_id!r} is gone (videos are kept {self.retain_s} s)") from None

    # ----------------------------------------------------------------- signing

    def _sig(self, video_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{video_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def signed_path(self, video_id: str) -> tuple[str, int]:
        """(path with query, expires_at) for a freshly signed URL."""
        expires = int(self._clock()) + self.ttl_s
        return f"/v1/videos/{video_id}.mp4?expires={expires}&sig={self._sig(video_id, expires)}", expires

    def verify(self, video_id: str, expires: int, sig: str) -> None:
        """AuthError (403) unless `sig` is ours for this video and `expires` is in the future."""
        self._path(video_id)  # 404 for anything that is not a video id
        if not hmac.compare_digest(self._sig(video_id, int(expires)).encode(), (sig or "").encode("utf-8", "replace")):
            raise AuthError("video URL signature is invalid", status_code=403)
        if int(expires) < self._clock():
            raise AuthError("video URL has expired; fetch the rollout again for a fresh video_url", status_code=403)

    # ----------------------------------------------------------------- housekeeping

    def _maybe_prune(self) -> None:
        now = time.time()  # file mtimes are wall-clock time, whatever clock signs URLs
        if now - self._last_prune < 60:
            return
        with self._lock:
            if now - self._last_prune < 60:
                return
            self._last_prune = now
        self.prune(now)

    def prune(self, now: float | None = None) -> int:
        """Delete videos and stored results past their retention; returns how many."""
        now = time.time() if now is None else now
        n = 0
        for pattern, retain in (("vid_*.mp4", self.retain_s), ("res_*.bin", self.result_retain_s)):
            cutoff = now - retain
            for p in self.directory.glob(pattern):
                try:
                    if p.stat().st_mtime < cutoff:
                        p.unlink()
                        n += 1
                except FileNotFoundError:
                    pass
        return n
