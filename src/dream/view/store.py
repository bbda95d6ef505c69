"""Read (and, for QC, write) the files of a sink's output, whatever its layout.

`open_store(uri)` takes what `dream.io.uri.sink_from_uri` takes (a folder, `s3://bucket/prefix`,
`hf://datasets/org/name`) and returns an `OutputStore`: a few relative-path operations on
the output's files. The viewer and `dream qc` see only this interface, the way `bulk.py`
sees only `RolloutSink`; S3 goes through the client `dream.io` builds
(`make_s3_client`), the Hub through `huggingface_hub`.
"""

from __future__ import annotations

import os
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from dream._extras import require

__all__ = ["DirStore", "HubStore", "OutputStore", "S3Store", "open_store"]


class OutputStore(ABC):
    """Relative paths (`videos/ep00.mp4`, `metadata.parquet`) inside one sink output."""

    uri: str

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Relative paths of the files under `prefix` (a folder, '' for all), sorted."""

    @abstractmethod
    def read_bytes(self, rel: str) -> bytes:
        """The file's bytes; FileNotFoundError naming it when absent."""

    @abstractmethod
    def exists(self, rel: str) -> bool:
        """Whether the file is there."""

    @abstractmethod
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write (replace) a file atomically."""

    def version(self, rel: str) -> object:
        """Something that changes when the file changes (None: assume it never does)."""
        return None

    def local_dir(self) -> Path | None:
        """The output's folder when it is local (a `dream qc` parent sink goes beside it)."""
        return None


def _check_rel(rel: str) -> str:
    parts = rel.split("/")
    if not rel or rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"not a relative path inside the output: {rel!r}")
    return rel


class DirStore(OutputStore):
    """A local folder written by `RolloutSink.dir`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"no such output folder: {str(self.path)!r}")
        self.uri = str(self.path.resolve())

    def _file(self, rel: str) -> Path:
        return self.path / _check_rel(rel)

    def list(self, prefix: str) -> list[str]:
        base = self.path / prefix if prefix else self.path
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.path).as_posix() for p in base.rglob("*") if p.is_file())

    def read_bytes(self, rel: str) -> bytes:
        path = self._file(rel)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{rel!r} is not in {self.uri!r}") from None

    def exists(self, rel: str) -> bool:
        return self._file(rel).is_file()

    def write_bytes(self, rel: str, data: bytes) -> None:
        path = self._file(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.dream-tmp-{uuid.uuid4().hex}")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def version(self, rel: str) -> object:
        try:
            st = self._file(rel).stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def local_dir(self) -> Path:
        return self.path


class S3Store(OutputStore):
    """An S3 prefix written by `RolloutSink.s3`."""

    def __init__(self, uri: str, *, boto3_kwargs: dict[str, Any] | None = None) -> None:
        from dream.io.sources.s3 import make_s3_client, parse_s3_uri

        self.bucket, self.prefix = parse_s3_uri(uri)
        self.uri = f"s3://{self.bucket}/{self.prefix}/" if self.prefix else f"s3://{self.bucket}/"
        self.client = make_s3_client(boto3_kwargs)

    def _key(self, rel: str) -> str:
        _check_rel(rel)
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def list(self, prefix: str) -> list[str]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        if full and not full.endswith("/"):
            full += "/"
        skip = len(self.prefix) + 1 if self.prefix else 0
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            out.extend(obj["Key"][skip:] for obj in page.get("Contents", []))
        return sorted(out)

    def read_bytes(self, rel: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(rel))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"{rel!r} is not in {self.uri!r}") from None

    def exists(self, rel: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(rel))
        except Exception as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def write_bytes(self, rel: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(rel), Body=data)

    def version(self, rel: str) -> object:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(rel)).get("ETag")
        except Exception:
            return None


class HubStore(OutputStore):
    """A Hugging Face dataset repo written by `RolloutSink.hf` (read through the Hub cache)."""

    def __init__(self, repo_id: str, *, token: str | None = None, endpoint: str | None = None,
                 revision: str | None = None) -> None:
        hub = require("huggingface_hub", "Viewing a Hub output")
        self.repo_id = repo_id
        self.revision = revision
        self.uri = f"hf://datasets/{repo_id}"
        self.api = hub.HfApi(token=token, endpoint=endpoint)
        self._files: list[str] | None = None

    def _all(self) -> list[str]:
        if self._files is None:
            self._files = sorted(self.api.list_repo_files(self.repo_id, repo_type="dataset", revision=self.revision))
        return self._files

    def list(self, prefix: str) -> list[str]:
        head = f"{prefix.rstrip('/')}/" if prefix else ""
        return [f for f in self._all() if f.startswith(head)]

    def read_bytes(self, rel: str) -> bytes:
        _check_rel(rel)
        if rel not in self._all():
            raise FileNotFoundError(f"{rel!r} is not in {self.uri!r}")
        path = self.api.hf_hub_download(self.repo_id, rel, repo_type="dataset", revision=self.revision)
        return Path(path).read_bytes()

    def exists(self, rel: str) -> bool:
        return rel in self._all()

    def write_bytes(self, rel: str, data: bytes) -> None:
        _check_rel(rel)
        self.api.upload_file(path_or_fileobj=data, path_in_repo=rel, repo_id=self.repo_id, repo_type="dataset",
                             commit_message=f"dream qc: {rel}")
        self._files = None


def open_store(uri: str | Path, **options: Any) -> OutputStore:
    """The store of a sink output: a folder, `s3://bucket/prefix` or `hf://datasets/org/name`.

    Options go to the store (`boto3_kwargs` for S3; `token`, `endpoint` for the Hub).
    Raises FileNotFoundError for a missing folder, ValueError for a URI of another kind.
    """
    text = str(uri)
    if text.startswith("s3://"):
        return S3Store(text, **options)
    if text.startswith("hf://"):
        from dream.io.uri import _hf_dataset_id

        repo, revision = _hf_dataset_id(text)
        return HubStore(repo, revision=revision, **options)
    if "://" in text and not text.startswith("file://"):
        raise ValueError(f"cannot view {text!r}: expected a folder, s3://bucket/prefix or hf://datasets/org/name")
    if options:
        raise TypeError(f"a folder output takes no options, got {sorted(options)}")
    return DirStore(text[len("file://"):] if text.startswith("file://") else text)
