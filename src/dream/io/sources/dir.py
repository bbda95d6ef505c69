"""frames_from_dir: frame / actions file pairs in one local folder (no extra needed)."""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterator
from pathlib import Path

from dream.io.types import IterableSource, SourceRow

__all__ = ["DirSource", "frames_from_dir"]


class DirSource(IterableSource):
    """Rows from `<stem><frame suffix>` + `<stem><actions suffix>` pairs in one folder.

    The folder is listed once, at construction (non-recursive, sorted by stem); file
    contents are read lazily on each pass, so memory does not grow with the folder.
    """

    def __init__(self, path: str | Path, *, frame_glob: str = "*.png", actions_glob: str = "*.npy") -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ValueError(f"frames_from_dir: {str(self.path)!r} is not a directory")
        self.frame_glob = frame_glob
        self.actions_glob = actions_glob
        frames = sorted(
            (p.stem, p.relative_to(self.path).as_posix()) for p in self.path.glob(frame_glob) if p.is_file()
        )
        actions: dict[str, str] = {}
        for p in sorted(self.path.glob(actions_glob)):
            if p.is_file():
                actions.setdefault(p.stem, p.relative_to(self.path).as_posix())
        # (stem, frame path, actions path or None), relative to the folder: strings, not
        # Paths, to keep a 50K-row listing small. Two frames with one stem (possible with a
        # recursive glob) both become rows; predict_many reports the second as a duplicate.
        self._pairs: list[tuple[str, str, str | None]] = [
            (stem, rel, actions.get(stem)) for stem, rel in frames
        ]
        # ⚠ sdk-surface §18.2 raises ValueError at construction when any frame lacks its
        # actions file. We yield such frames as rows with `error` set instead, so that one
        # orphan does not stop a 50K-row skip-mode run; predict_many records each as failed
        # (halt mode stops there, naming the row).
        self.orphans = [frame for _, frame, act in self._pairs if act is None]
        self.rows_hint = len(self._pairs)

    def __iter__(self) -> Iterator[SourceRow]:
        return self._iter_rows(())

    def shards(self, n: int) -> list[DirSource]:
        """Up to `n` disjoint sources covering this listing in stem order (parallel reads,
        e.g. `dream.ray.SourceDatasource`); each re-lists nothing."""
        n = max(1, min(int(n), len(self._pairs) or 1))
        size = -(-len(self._pairs) // n)  # contiguous runs keep each shard's stems sorted
        out = []
        for i in range(n):
            shard = copy.copy(self)
            shard._pairs = self._pairs[i * size : (i + 1) * size]
            shard.orphans = [frame for _, frame, act in shard._pairs if act is None]
            shard.rows_hint = len(shard._pairs)
            out.append(shard)
        return [s for s in out if s._pairs] or out[:1]

    def _iter_rows(self, skip_ids: Collection[str]) -> Iterator[SourceRow]:
        """Rows in stem order; rows named in `skip_ids` come without their file contents."""
        source_path = str(self.path)
        for stem, frame_name, actions_name in self._pairs:
            metadata = {"source_path": source_path, "frame_file": frame_name, "actions_file": actions_name}
            if stem in skip_ids:
                yield SourceRow(stem, b"", b"", metadata)
                continue
            if actions_name is None:
                wanted = self.actions_glob.replace("*", stem, 1)
                yield SourceRow(
                    stem,
                    b"",
                    b"",
                    metadata,
                    error=f"frame file {frame_name!r} has no actions file (expected {wanted!r} in {source_path})",
                )
                continue
            try:
                frame_bytes = (self.path / frame_name).read_bytes()
                actions_bytes = (self.path / actions_name).read_bytes()
            except OSError as exc:
                yield SourceRow(stem, b"", b"", metadata, error=f"cannot read row files: {exc}")
                continue
            yield SourceRow(stem, frame_bytes, actions_bytes, metadata)

    def __repr__(self) -> str:
        return f"DirSource({str(self.path)!r}, rows={self.rows_hint})"


def frames_from_dir(path: str | Path, *, frame_glob: str = "*.png", actions_glob: str = "*.npy") -> DirSource:
    """Frame / actions pairs from one local folder, paired by file stem.

    `ep_001.png` + `ep_001.npy` → a row with `row_id="ep_001"`. The listing is
    non-recursive and sorted by stem; actions files with no frame are ignored; a frame with
    no actions file becomes a row with `error` set (recorded as failed by predict_many).
    `rows_hint` is the number of frame files. Needs no extra.
    """
    return DirSource(path, frame_glob=frame_glob, actions_glob=actions_glob)
