"""frames_from_s3: frame / actions object pairs under one S3 prefix (needs boto3)."""

from __future__ import annotations

import fnmatch
import re
import warnings
from collections import deque
from collections.abc import Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from dream._extras import require
from dream.io.types import IterableSource, SourceRow

__all__ = ["S3Source", "frames_from_s3", "parse_s3_uri"]


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` → ("bucket", "some/prefix") (prefix without edge slashes)."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"expected an s3://bucket/prefix URI, got {uri!r}")
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"S3 URI {uri!r} names no bucket")
    return bucket, prefix.strip("/")


def make_s3_client(boto3_kwargs: dict[str, Any] | None) -> Any:
    boto3 = require("boto3", "S3 access")
    return boto3.client("s3", **(boto3_kwargs or {}))


class S3Source(IterableSource):
    """Rows from frame / actions objects under an S3 prefix.

    Every key under the prefix is listed once, at construction (ListObjectsV2, paginated);
    each pass then fetches the two objects of each row, `prefetch` rows ahead on a small
    thread pool, in row-id order.
    """

    def __init__(
        self,
        uri: str,
        *,
        frame_glob: str = "*.png",
        actions_glob: str = "*.npy",
        id_pattern: str = r"(.*)\.png$",
        boto3_kwargs: dict[str, Any] | None = None,
        prefetch: int = 8,
    ) -> None:
        self.bucket, self.prefix = parse_s3_uri(uri)
        if not actions_glob.startswith("*") or any(c in actions_glob[1:] for c in "*?["):
            raise ValueError(f"actions_glob must look like '*<suffix>' (e.g. '*.npy'), got {actions_glob!r}")
        self.frame_glob = frame_glob
        self.actions_suffix = actions_glob[1:]
        self.id_pattern = re.compile(id_pattern)
        self.boto3_kwargs = dict(boto3_kwargs or {})
        self.prefetch = max(1, int(prefetch))

        keys = self._list_relative_keys(make_s3_client(self.boto3_kwargs))
        key_set = set(keys)
        rows: dict[str, tuple[str, str | None]] = {}
        unmatched: list[str] = []
        for rel in keys:
            if not fnmatch.fnmatchcase(rel, frame_glob):
                continue
            match = self.id_pattern.search(rel)
            if match is None or match.lastindex is None:
                unmatched.append(rel)
                continue
            row_id = match.group(1)
            actions_rel = row_id + self.actions_suffix
            rows[row_id] = (rel, actions_rel if actions_rel in key_set else None)
        if unmatched:
            warnings.warn(
                f"frames_from_s3: {len(unmatched)} frame object(s) matching {frame_glob!r} do not match "
                f"id_pattern {id_pattern!r} and are left out (e.g. {unmatched[0]!r})",
                stacklevel=3,
            )
        # (row_id, frame key, actions key or None), sorted by row id.
        self._rows: list[tuple[str, str, str | None]] = [(rid, *rows[rid]) for rid in sorted(rows)]
        # ⚠ sdk-surface §18.2 skips frames without actions silently. We yield them as rows
        # with `error` set so predict_many reports each one instead of losing it.
        self.orphans = [frame for _, frame, act in self._rows if act is None]
        self.rows_hint = len(self._rows)

    def _list_relative_keys(self, client: Any) -> list[str]:
        list_prefix = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=list_prefix):
            for obj in page.get("Contents", ()):
                rel = obj["Key"][len(list_prefix) :].lstrip("/")
                if rel:
                    keys.append(rel)
        keys.sort()
        return keys

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def __iter__(self) -> Iterator[SourceRow]:
        return self._iter_rows(())

    def _fetch(self, client: Any, row_id: str, frame_rel: str, actions_rel: str | None) -> SourceRow:
        frame_key = self._key(frame_rel)
        metadata = {"s3_uri": f"s3://{self.bucket}/{frame_key}"}
        if actions_rel is None:
            return SourceRow(
                row_id,
                b"",
                b"",
                metadata,
                error=(
                    f"frame object {frame_key!r} has no actions object "
                    f"(expected {self._key(row_id + self.actions_suffix)!r})"
                ),
            )
        try:
            frame = client.get_object(Bucket=self.bucket, Key=frame_key)["Body"].read()
            actions = client.get_object(Bucket=self.bucket, Key=self._key(actions_rel))["Body"].read()
        except Exception as exc:  # botocore ClientError / connection errors: this row only
            return SourceRow(row_id, b"", b"", metadata, error=f"cannot read row objects from S3: {exc}")
        return SourceRow(row_id, frame, actions, metadata)

    def _iter_rows(self, skip_ids: Collection[str]) -> Iterator[SourceRow]:
        """Rows in id order, fetched `prefetch` ahead; rows in `skip_ids` are not fetched."""
        client = make_s3_client(self.boto3_kwargs)  # clients are thread-safe; one per pass
        pending: deque[Future[SourceRow] | SourceRow] = deque()
        with ThreadPoolExecutor(max_workers=self.prefetch, thread_name_prefix="dream-s3-src") as pool:
            try:
                for row_id, frame_rel, actions_rel in self._rows:
                    if row_id in skip_ids:
                        metadata = {"s3_uri": f"s3://{self.bucket}/{self._key(frame_rel)}"}
                        pending.append(SourceRow(row_id, b"", b"", metadata))
                    else:
                        pending.append(pool.submit(self._fetch, client, row_id, frame_rel, actions_rel))
                    while len(pending) > self.prefetch:
                        yield _resolve(pending.popleft())
                while pending:
                    yield _resolve(pending.popleft())
            finally:
                for item in pending:
                    if isinstance(item, Future):
                        item.cancel()

    def __repr__(self) -> str:
        return f"S3Source('s3://{self.bucket}/{self.prefix}', rows={self.rows_hint})"


def _resolve(item: Future[SourceRow] | SourceRow) -> SourceRow:
    return item.result() if isinstance(item, Future) else item


def frames_from_s3(
    uri: str,
    *,
    frame_glob: str = "*.png",
    actions_glob: str = "*.npy",
    id_pattern: str = r"(.*)\.png$",
    boto3_kwargs: dict[str, Any] | None = None,
    prefetch: int = 8,
) -> S3Source:
    """Frame / actions object pairs under an S3 prefix.

    Keys are taken relative to the prefix; `frame_glob` selects frames (fnmatch, where `*`
    also crosses `/`), group 1 of `id_pattern` applied to the relative key is the row id,
    and the actions object is `<row_id><suffix of actions_glob>`. A frame whose actions
    object is missing becomes a row with `error` set. `boto3_kwargs` go to
    `boto3.client("s3", ...)` (e.g. `endpoint_url`, `region_name`). `prefetch` rows are
    fetched ahead on a thread pool. `rows_hint` = number of frames. Needs boto3.
    """
    return S3Source(
        uri,
        frame_glob=frame_glob,
        actions_glob=actions_glob,
        id_pattern=id_pattern,
        boto3_kwargs=boto3_kwargs,
        prefetch=prefetch,
    )
