"""dream qc: PSNR drift of augmented rows against their unperturbed parents (dream.view.qc)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from dream.view.qc import drift_per_frame, run_qc
from tests.view.conftest import AugmentedSource


@pytest.fixture
def output(bulk_output: Path, tmp_path: Path) -> Path:
    """A private copy of the shared bulk output (QC writes into it)."""
    return Path(shutil.copytree(bulk_output, tmp_path / "bulk"))


def test_drift_is_zero_for_a_copy_and_3db_when_departure_equals_motion() -> None:
    parent = np.zeros((3, 16, 16, 3), np.uint8)
    parent[1:] = 10  # the parent moves: MSE(parent_t, parent_0) = 100
    psnr_db, drift = drift_per_frame(parent.copy(), parent)
    assert psnr_db == [None, None] and drift == [0.0, 0.0]
    row = parent.copy()
    row[1:] = 20  # departs from the parent by as much as the parent moved: MSE 100
    psnr_db, drift = drift_per_frame(row, parent)
    assert drift == pytest.approx([10 * np.log10(2)] * 2, abs=1e-4)
    assert psnr_db == pytest.approx([10 * np.log10(255**2 / 100)] * 2, abs=1e-3)


def test_drift_of_a_still_parent_uses_the_floor_not_infinity() -> None:
    parent = np.zeros((2, 16, 16, 3), np.uint8)
    row = parent.copy()
    row[1, 0, 0, 0] = 16  # MSE 256 / 768 = 1/3
    _, drift = drift_per_frame(row, parent)
    assert drift == pytest.approx([10 * np.log10(1 + 1 / 3)], abs=1e-4)


@pytest.mark.parametrize("shapes, match", [(((3, 16, 16, 3), (3, 8, 8, 3)), "frame size"),
                                           (((1, 16, 16, 3), (3, 16, 16, 3)), "at least 2 frames")])
def test_drift_rejects_mismatched_videos(shapes, match) -> None:
    with pytest.raises(ValueError, match=match):
        drift_per_frame(np.zeros(shapes[0], np.uint8), np.zeros(shapes[1], np.uint8))


def test_qc_scores_rows_against_parents_in_the_output(output: Path) -> None:
    import pyarrow.parquet as pq

    result = run_qc(output, parent_key="source_episode", progress=False)
    by_id = {s.row_id: s for s in result.scores}
    assert set(by_id) == {"ep00_aug1", "ep00_aug2", "ep01_bad"}
    small, large = by_id["ep00_aug1"], by_id["ep00_aug2"]
    assert small.drift_db < 0.5 and not small.flagged  # 4 px of action noise
    assert large.drift_db > 2.0 and large.flagged  # 120 px: the agent goes elsewhere
    assert len(large.psnr_db) == len(large.drift_per_frame_db) == 8  # predicted frames of T = 8
    assert large.drift_db == pytest.approx(np.mean(large.drift_per_frame_db), abs=1e-3)
    assert "failed" in by_id["ep01_bad"].error and not by_id["ep01_bad"].flagged
    table = pq.read_table(output / "qc_scores.parquet").to_pylist()
    assert {r["row_id"]: r["flagged"] for r in table} == {"ep00_aug1": False, "ep00_aug2": True, "ep01_bad": False}
    assert [s.row_id for s in result.worst(1)] == ["ep00_aug2"]
    # A stricter threshold flags the small perturbation too; the table is rewritten.
    assert {s.row_id for s in run_qc(output, parent_key="source_episode", threshold_db=0.0,
                                     progress=False).flagged} == {"ep00_aug1", "ep00_aug2"}


def test_qc_rolls_out_missing_parents_and_the_viewer_shows_the_scores(tmp_path: Path, output: Path) -> None:
    """Only the children are in this output: QC rolls the parent out from the unperturbed source."""
    from fastapi.testclient import TestClient

    import dream
    from dream.io import RolloutSink
    from dream.view import open_view

    full = run_qc(output, parent_key="source_episode", progress=False)
    source = AugmentedSource()
    children = AugmentedSource()
    children.rows = [r for r in source.rows if r.row_id.startswith("ep00_aug")]
    children_out = tmp_path / "children"
    dream.Client().predict_many(children, RolloutSink.dir(children_out), spec="pusht-96", progress=False)
    without = run_qc(children_out, parent_key="source_episode", progress=False)
    assert all("neither in the output nor rolled out" in s.error for s in without.scores)

    result = run_qc(children_out, parent_key="source_episode", parents=source, progress=False)
    assert result.rolled_out_parents == ["ep00"]
    assert (children_out / "qc_parents" / "videos" / "ep00.mp4").is_file()
    expected = {s.row_id: s.drift_db for s in full.scored}
    assert {s.row_id: s.drift_db for s in result.scores} == expected  # same parent, same engine → same scores

    client = TestClient(open_view(str(children_out)))
    flagged = client.get("/api/rows", params={"status": "flagged"}).json()
    assert [r["row_id"] for r in flagged["rows"]] == ["ep00_aug2"] and flagged["counts"]["flagged"] == 1
    worst = client.get("/api/rows", params={"sort": "qc_drift_db", "desc": "true"}).json()["rows"]
    assert [r["row_id"] for r in worst] == ["ep00_aug2", "ep00_aug1"]
    assert worst[0]["qc"]["drift_db"] == pytest.approx(expected["ep00_aug2"])
    cmp = client.get("/api/compare", params={"id": "ep00_aug2"}).json()
    scored = {s.row_id: s for s in result.scores}
    assert cmp["reference"]["row_id"] == "ep00" and cmp["psnr_db"][1:] == scored["ep00_aug2"].psnr_db
    assert client.get("/api/reference/video", params={"id": "ep00_aug2"}).content == (
        children_out / "qc_parents" / "videos" / "ep00.mp4").read_bytes()


def test_qc_errors_name_the_key_and_the_threshold(output: Path) -> None:
    with pytest.raises(ValueError, match=r"'nope'.*source_episode"):
        run_qc(output, parent_key="nope", progress=False)
    with pytest.raises(ValueError, match="-1"):
        run_qc(output, parent_key="source_episode", threshold_db=-1, progress=False)


def test_dream_qc_command(output: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "dream.cli", "qc", str(output), "--parent-key", "source_episode",
                          "--no-progress"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "2 row(s) scored, 1 flagged" in res.stdout
    assert "ep00_aug2: drift" in res.stdout and "FLAGGED" in res.stdout
    assert (output / "qc_scores.parquet").is_file()
    bad = subprocess.run([sys.executable, "-m", "dream.cli", "qc", str(output), "--parent-key", "nope"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stderr.startswith("error: no row of") and "Traceback" not in bad.stderr
