"""dream.io contract: lazy imports, __all__, the docs' user subclasses, URI parsing."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from io_support import MemorySink, TinyEngine, write_episode_dir
from PIL import Image

import dream.io
from dream.bulk.threads import run_predict_many
from dream.io import IterableSource, RolloutRecord, RolloutSink, SourceRow
from dream.io.uri import sink_from_uri, source_from_uri

SPEC_ALL = [
    "IterableSource",
    "SourceRow",
    "RolloutSink",
    "RolloutRecord",
    "frames_from_dir",
    "frames_from_hf",
    "frames_from_s3",
    "DirRolloutSink",
    "HfRolloutSink",
    "S3RolloutSink",
]


def test_all_matches_the_spec_and_every_name_resolves() -> None:
    assert sorted(dream.io.__all__) == sorted(SPEC_ALL)
    for name in [*SPEC_ALL, "frames_from_lerobot", "LeRobotSource", "source_from_uri", "sink_from_uri"]:
        assert getattr(dream.io, name) is not None


def test_import_dream_io_loads_no_heavy_module() -> None:
    code = (
        "import sys, dream.io, dream._bulk, dream.bulk.threads, dream.bulk.estimate\n"
        "heavy = [m for m in ('numpy', 'pyarrow', 'boto3', 'botocore', 'datasets', 'huggingface_hub', 'av', 'PIL', 'tqdm')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_extra_names_the_install_line() -> None:
    code = (
        "import sys\n"
        "sys.modules['boto3'] = None\n"
        "from dream.io import frames_from_s3\n"
        "try:\n"
        "    frames_from_s3('s3://b/p')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'dream-engine[io]'" in out.stdout


def test_len_follows_rows_hint() -> None:
    class Hintless(IterableSource):
        def __iter__(self):
            return iter(())

    with pytest.raises(TypeError, match="rows_hint"):
        len(Hintless())
    src = Hintless()
    src.rows_hint = 7
    assert len(src) == 7


def test_source_row_error_is_an_optional_trailing_keyword() -> None:
    row = SourceRow("a", b"f", b"a")
    assert row.metadata == {} and row.error is None
    assert SourceRow("a", b"", b"", {}, error="broken").error == "broken"


# -- the product docs' custom classes, verbatim in shape ---------------------------------------


class MyDatabaseSource(IterableSource):
    """Loads episodes from a custom database (the datasets-io doc's example)."""

    def __init__(self, connection_string: str):
        self._conn_str = connection_string
        self.rows_hint = self._count_rows()

    def _count_rows(self) -> int:
        return 3

    def _fetch_episodes(self):
        for i in range(3):
            yield {
                "id": i,
                "start_frame": np.full((16, 16, 3), 40 * i, np.uint8),
                "actions": np.zeros((8, 2), np.float32) + i,
            }

    def __iter__(self):
        for episode in self._fetch_episodes():
            buf = io.BytesIO()
            Image.fromarray(episode["start_frame"]).save(buf, format="PNG")
            frame_bytes = buf.getvalue()
            actions_buf = io.BytesIO()
            np.save(actions_buf, episode["actions"].astype(np.float32))
            actions_bytes = actions_buf.getvalue()
            yield SourceRow(
                row_id=str(episode["id"]),
                frame_bytes=frame_bytes,
                actions_bytes=actions_bytes,
                metadata={"source": "my-database"},
            )


class MyWarehouseSink(RolloutSink):
    """Writes rollouts to a proprietary video warehouse (the datasets-io doc's example)."""

    def __init__(self, warehouse_url: str):
        self._url = warehouse_url
        self._written = 0
        self.uploaded: dict[str, bytes] = {}

    def write(self, record: RolloutRecord) -> None:
        self._upload(record.row_id, record.mp4_bytes)
        self._written += 1

    def finalize(self) -> str:
        return f"{self._url} ({self._written} rollouts)"

    def _upload(self, row_id: str, mp4_bytes: bytes) -> None:
        self.uploaded[row_id] = mp4_bytes


class PerturbedEpisodeSource(IterableSource):
    """The data-augmentation example's source (K perturbed variants per episode)."""

    def __init__(self, episode_paths: list[Path], k_perturbs: int = 4):
        self._paths = episode_paths
        self._k = k_perturbs
        self.rows_hint = len(episode_paths) * k_perturbs

    def __iter__(self):
        for ep_path in self._paths:
            ep = np.load(ep_path)
            start = ep["start_frame"]
            base = ep["actions"]
            for i in range(self._k):
                noise = np.random.RandomState(i).randn(*base.shape).astype(np.float32) * 0.05
                actions = (base + noise).astype(np.float32)
                buf = io.BytesIO()
                Image.fromarray(start).save(buf, format="PNG")
                act_buf = io.BytesIO()
                np.save(act_buf, actions)
                yield SourceRow(
                    row_id=f"{ep_path.stem}_aug{i:02d}",
                    frame_bytes=buf.getvalue(),
                    actions_bytes=act_buf.getvalue(),
                    metadata={"seed": i, "source_episode": ep_path.stem},
                )


def test_docs_custom_source_and_sink_work_unchanged() -> None:
    src = MyDatabaseSource("postgresql://example")
    sink = MyWarehouseSink("warehouse://bucket")
    engine = TinyEngine(source=src)
    result = run_predict_many(src, sink, predict=engine, spec="tiny", concurrency=2, progress=False)
    assert (result.ok, result.failed, result.skipped) == (3, 0, 0)
    assert result.output_uri == "warehouse://bucket (3 rollouts)"
    assert sorted(sink.uploaded) == ["0", "1", "2"]
    assert all(mp4[4:8] == b"ftyp" for mp4 in sink.uploaded.values())


def test_data_augmentation_example_source_and_dir_sink(tmp_path: Path) -> None:
    paths = []
    for e in range(2):
        path = tmp_path / f"ep_{e:03d}.npz"
        np.savez(path, start_frame=np.full((16, 16, 3), 90, np.uint8), actions=np.zeros((8, 2), np.float32))
        paths.append(path)
    src = PerturbedEpisodeSource(paths, k_perturbs=2)
    sink = RolloutSink.dir(tmp_path / "augmented")
    result = run_predict_many(src, sink, predict=TinyEngine(), spec="tiny", concurrency=2, progress=False)
    assert result.ok == 4
    assert sorted(p.name for p in (tmp_path / "augmented" / "videos").iterdir()) == [
        "ep_000_aug00.mp4",
        "ep_000_aug01.mp4",
        "ep_001_aug00.mp4",
        "ep_001_aug01.mp4",
    ]
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "augmented" / "metadata.parquet").to_pylist()
    # As in 0.5.0 the source's keys are columns one can filter on; the run's seed is
    # `sampling_seed`, so it cannot clash with the source's own "seed".
    assert {(r["source_episode"], r["seed"]) for r in table} == {(f"ep_00{e}", k) for e in (0, 1) for k in (0, 1)}
    assert {r["sampling_seed"] for r in table} == {0} and {r["status"] for r in table} == {200}


def test_minimal_user_sink_gets_no_failed_rows(tmp_path: Path) -> None:
    write_episode_dir(tmp_path / "eps", 2)
    (tmp_path / "eps" / "orphan.png").write_bytes((tmp_path / "eps" / "ep_000.png").read_bytes())
    sink = MemorySink()
    result = run_predict_many(
        dream.io.frames_from_dir(tmp_path / "eps"), sink, predict=TinyEngine(), progress=False
    )
    assert result.ok == 2 and [f.row_id for f in result.failures] == ["orphan"]
    assert sorted(sink.records) == ["ep_000", "ep_001"]  # write() only ever sees successes


# -- URIs ----------------------------------------------------------------------------------


def test_source_uris(tmp_path: Path, s3_bucket, s3_kwargs) -> None:
    from dream.io.sources.dir import DirSource
    from dream.io.sources.lerobot import LeRobotSource
    from dream.io.sources.s3 import S3Source

    write_episode_dir(tmp_path / "eps", 2)
    assert isinstance(source_from_uri(str(tmp_path / "eps")), DirSource)
    assert isinstance(source_from_uri(f"file://{tmp_path / 'eps'}"), DirSource)
    assert source_from_uri(str(tmp_path / "eps"), frame_glob=None).rows_hint == 2  # None options dropped
    with pytest.raises(ValueError, match=r"does not take option.*nonsense.*valid options: actions_glob, frame_glob"):
        source_from_uri(str(tmp_path / "eps"), nonsense=1)

    bucket, client = s3_bucket
    client.put_object(Bucket=bucket, Key="p/a.png", Body=b"x")
    client.put_object(Bucket=bucket, Key="p/a.npy", Body=b"x")
    src = source_from_uri(f"s3://{bucket}/p", boto3_kwargs=s3_kwargs)
    assert isinstance(src, S3Source) and src.rows_hint == 1

    from io_support import make_lerobot_v21

    root = make_lerobot_v21(tmp_path / "lr", [4, 4])
    assert isinstance(source_from_uri(f"lerobot://{root}"), LeRobotSource)  # lerobot:///abs/path
    assert isinstance(source_from_uri(str(root)), LeRobotSource)  # a LeRobot folder is detected
    windows = source_from_uri(f"lerobot://{root}?horizon=2&stride=2")
    assert windows.rows_hint == 4 and windows.horizon == 2
    # What the CLI passes (`--source-opt horizon=2`): text, converted by the signature.
    windows = source_from_uri(f"lerobot://{root}", horizon="2", stride="2", episodes="1")
    assert (windows.horizon, windows.stride, windows.rows_hint) == (2, 2, 2)
    with pytest.raises(ValueError, match="horizon='two': expected int"):
        source_from_uri(f"lerobot://{root}", horizon="two")

    for bad in ["ftp://x/y", "hf://models/org/name", "hf://datasets/justone", ""]:
        with pytest.raises(ValueError):
            source_from_uri(bad)


def test_hf_source_uri_takes_fields_from_the_query(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"img": ["x"], "act": [[[0.0, 0.0]]]}), tmp_path / "train.parquet")
    src = source_from_uri(f"hf+parquet://{tmp_path}/train.parquet?frame_field=img&actions_field=act")
    assert (src.frame_field, src.actions_field, src.rows_hint) == ("img", "act", 1)
    with pytest.raises(ValueError, match=r"needs option.*frame_field, actions_field"):
        source_from_uri(f"hf+parquet://{tmp_path}/train.parquet")  # the fields are required


def test_sink_uris(tmp_path: Path, s3_bucket, s3_kwargs, hub) -> None:
    from dream.io.sinks.dir import DirRolloutSink
    from dream.io.sinks.hf import HfRolloutSink
    from dream.io.sinks.s3 import S3RolloutSink

    assert isinstance(sink_from_uri(str(tmp_path / "out")), DirRolloutSink)
    assert isinstance(sink_from_uri(f"file://{tmp_path / 'out2'}?videos_subdir=mp4"), DirRolloutSink)
    assert (tmp_path / "out2" / "mp4").is_dir()
    bucket, _ = s3_bucket
    s3 = sink_from_uri(f"s3://{bucket}/runs/1/", boto3_kwargs=s3_kwargs)
    assert isinstance(s3, S3RolloutSink) and s3.output_uri == f"s3://{bucket}/runs/1/"
    hf = sink_from_uri("hf://datasets/org/name?shard_rows=7&private=true", endpoint=hub.endpoint)
    assert isinstance(hf, HfRolloutSink) and hf.shard_rows == 7 and hf.private is True
    # CLI text is converted by the sink's signature: "false" is False, not a true string.
    assert sink_from_uri(str(tmp_path / "out3"), fsync="false").fsync is False
    assert sink_from_uri(str(tmp_path / "out4"), fsync="true").fsync is True
    with pytest.raises(ValueError, match="fsync='maybe': expected bool"):
        sink_from_uri(str(tmp_path / "out5"), fsync="maybe")
    with pytest.raises(ValueError, match="unsupported sink URI"):
        sink_from_uri("gs://bucket/x")
