"""dream augment: seeded variants, PSNR-drift QC against the parent, only accepted variants written."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import dream
from dream.augment import AugmentSource, augment, variant_id
from dream.cli import main
from dream.examples.pusht_files import write_pusht_dir
from dream.io import RolloutSink, frames_from_dir


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("eps")
    write_pusht_dir(folder)
    for npy in sorted(folder.glob("*.npy"))[2:]:  # two short rows keep the test quick
        npy.unlink()
        npy.with_suffix(".png").unlink()
    for npy in folder.glob("*.npy"):
        np.save(npy, np.load(npy)[:12])
    return folder


def test_variants_are_seeded_per_row_and_variant(episodes: Path) -> None:
    src = frames_from_dir(episodes)
    a = list(AugmentSource(src, variants=3, noise=5.0))
    b = list(AugmentSource(src, variants=5, noise=5.0))
    assert [r.row_id for r in a[:4]] == ["ep00", "ep00_aug00", "ep00_aug01", "ep00_aug02"]
    assert a[1].actions_bytes == b[1].actions_bytes  # same variant whatever K
    assert a[1].actions_bytes != a[2].actions_bytes
    base = np.load(io.BytesIO(a[0].actions_bytes))
    noise = np.load(io.BytesIO(a[1].actions_bytes)) - base
    assert 2.0 < noise.std() < 8.0 and a[1].metadata["parent_row_id"] == "ep00"
    other_seed = list(AugmentSource(src, variants=1, noise=5.0, noise_seed=1))
    assert other_seed[1].actions_bytes != a[1].actions_bytes
    with pytest.raises(ValueError, match="variants must be a positive int"):
        AugmentSource(src, variants=0, noise=1.0)
    with pytest.raises(ValueError, match="noise must be"):
        AugmentSource(src, variants=1, noise=-1.0)


def test_qc_drops_drifting_variants_and_resume_skips_decided_groups(episodes: Path, tmp_path: Path) -> None:
    client = dream.Client()
    src = frames_from_dir(episodes)
    kept = augment(src, RolloutSink.dir(tmp_path / "all"), variants=3, noise=4.0, qc_max_drop=None, client=client,
                   progress=False)
    assert (kept.parents, kept.accepted, kept.dropped, kept.failed) == (2, 6, 0, 0)
    drifts = sorted(s.drift_db for s in kept.scores)
    threshold = (drifts[2] + drifts[3]) / 2  # half of them pass
    sink_root = tmp_path / "qc"
    result = augment(src, RolloutSink.lerobot(sink_root, repo_id="me/aug"), variants=3, noise=4.0,
                     qc_max_drop=threshold, client=client, progress=False)
    assert (result.parents, result.accepted, result.dropped) == (2, 3, 3)
    assert all((s.drift_db <= threshold) == s.accepted for s in result.scores)
    episodes_table = [r for p in sorted((sink_root / "meta/episodes").glob("*/*.parquet"))
                      for r in pq.read_table(p).to_pylist()]
    written = {e["dream/row_id"]: e for e in episodes_table}
    accepted = {s.row_id for s in result.scores if s.accepted}
    assert set(written) == accepted | {"ep00", "ep01"}
    for row_id in accepted:
        e = written[row_id]
        assert e["dream/parent_row_id"] == row_id.split("_aug")[0]
        assert json.loads(e["dream/perturbation"])["sigma"] == 4.0
    parent_meta = json.loads(written["ep00"]["dream/source_metadata"])
    assert parent_meta["augment_role"] == "parent" and parent_meta["augment_variants"] == 3
    # Resume: every group is decided, nothing is rolled out or written again.
    again = augment(src, RolloutSink.lerobot(sink_root, repo_id="me/aug"), variants=3, noise=4.0,
                    qc_max_drop=threshold, client=client, progress=False)
    assert (again.parents, again.accepted, again.dropped, again.skipped_groups) == (0, 0, 0, 2)
    assert again.run.ok == 0 and again.run.skipped == 8


def test_cli_augment_and_run_into_a_lerobot_dataset(episodes: Path, tmp_path: Path, capsys) -> None:
    code = main(["augment", str(episodes), f"lerobot:{tmp_path / 'aug'}", "--sink-opt", "repo_id=me/aug",
                 "--variants", "2", "--noise", "3", "--qc-max-drop", "-1", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "2 parent(s), 4 variant(s) accepted, 0 dropped (no QC limit), 0 failed" in out
    assert "drift vs parent: median" in out
    code = main(["run", str(episodes), f"lerobot:{tmp_path / 'run'}", "--sink-opt", "repo_id=me/run",
                 "--no-progress"])
    assert code == 0
    info = json.loads((tmp_path / "run" / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 2 and info["total_frames"] == 24
    assert main(["run", str(episodes), f"lerobot:{tmp_path / 'x'}", "--no-progress"]) == 1
    assert "needs option(s) repo_id" in capsys.readouterr().err
    assert variant_id("ep00", 3) == "ep00_aug03"
