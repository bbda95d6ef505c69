"""The viewer's service and HTTP API over a real bulk output (dream.view)."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("pyarrow")

from fastapi.testclient import TestClient

from dream.view import open_view
from dream.view.catalog import Catalog, normalize_status
from dream.view.store import DirStore, open_store


@pytest.fixture(scope="module")
def client(bulk_output: Path) -> TestClient:
    return TestClient(open_view(str(bulk_output)))


def test_page_lists_rows_with_counts_and_columns(client: TestClient) -> None:
    page = client.get("/api/rows").json()
    assert page["counts"] == {"all": 5, "ok": 4, "failed": 1, "flagged": 0}
    assert {r["row_id"] for r in page["rows"]} == {"ep00", "ep01", "ep00_aug1", "ep00_aug2", "ep01_bad"}
    # 0.5.0's layout: the source's keys are columns of their own beside the SDK's.
    assert {"source_episode", "estimated_charge_usd", "sampling_seed"} <= set(page["columns"])


def test_filter_failed_rows_shows_their_errors(client: TestClient) -> None:
    page = client.get("/api/rows", params={"status": "failed"}).json()
    assert [r["row_id"] for r in page["rows"]] == ["ep01_bad"]
    assert "expects 2" in page["rows"][0]["error"] and page["rows"][0]["has_video"] is False


def test_search_by_row_id_and_sort_by_column(client: TestClient) -> None:
    page = client.get("/api/rows", params={"q": "AUG"}).json()
    assert sorted(r["row_id"] for r in page["rows"]) == ["ep00_aug1", "ep00_aug2"]
    asc = client.get("/api/rows", params={"sort": "row_id"}).json()["rows"]
    desc = client.get("/api/rows", params={"sort": "row_id", "desc": "true"}).json()["rows"]
    assert [r["row_id"] for r in asc] == sorted(r["row_id"] for r in asc)
    assert [r["row_id"] for r in desc] == [r["row_id"] for r in asc][::-1]


def test_bad_queries_name_the_value(client: TestClient) -> None:
    r = client.get("/api/rows", params={"sort": "nope"})
    assert r.status_code == 422 and "'nope'" in r.json()["detail"]
    r = client.get("/api/rows", params={"status": "weird"})
    assert r.status_code == 422 and "'weird'" in r.json()["detail"]
    r = client.get("/api/row", params={"id": "missing"})
    assert r.status_code == 404 and "'missing'" in r.json()["detail"]
    r = client.get("/api/video", params={"id": "ep01_bad"})
    assert r.status_code == 404 and "no video" in r.json()["detail"]


def test_thumbnail_is_first_and_last_frame(client: TestClient, bulk_output: Path) -> None:
    import numpy as np
    from PIL import Image

    from dream.engine.video import decode_mp4

    frames = decode_mp4((bulk_output / "videos" / "ep00.mp4").read_bytes())
    thumb = np.asarray(Image.open(io.BytesIO(client.get("/api/thumb", params={"id": "ep00"}).content)))
    h, w = frames.shape[1:3]
    assert thumb.shape == (h, 2 * w + 2, 3)
    assert np.array_equal(thumb[:, :w], frames[0]) and np.array_equal(thumb[:, w + 2 :], frames[-1])
    strip = Image.open(io.BytesIO(client.get("/api/strip", params={"id": "ep00"}).content))
    assert strip.size == (w * len(frames), h)


def test_video_is_the_rows_mp4(client: TestClient, bulk_output: Path) -> None:
    r = client.get("/api/video", params={"id": "ep00_aug1"})
    assert r.headers["content-type"] == "video/mp4"
    assert r.content == (bulk_output / "videos" / "ep00_aug1.mp4").read_bytes()


def test_side_by_side_with_parent_and_per_frame_psnr(client: TestClient, bulk_output: Path) -> None:
    from dream.engine.video import decode_mp4
    from dream.eval.metrics import psnr

    row = client.get("/api/row", params={"id": "ep00_aug2"}).json()
    assert row["reference"] == {"kind": "parent", "row_id": "ep00", "label": "parent ep00"}
    assert client.get("/api/row", params={"id": "ep00"}).json()["reference"] is None
    cmp = client.get("/api/compare", params={"id": "ep00_aug2"}).json()
    child = decode_mp4((bulk_output / "videos" / "ep00_aug2.mp4").read_bytes())
    parent = decode_mp4((bulk_output / "videos" / "ep00.mp4").read_bytes())
    expected = psnr(child, parent)
    assert cmp["frames"] == len(child) == 1 + 8
    assert cmp["psnr_db"][0] is None  # same start frame: identical
    assert cmp["psnr_db"][-1] == pytest.approx(float(expected[-1]), abs=1e-3)
    assert client.get("/api/reference/video", params={"id": "ep00_aug2"}).content == (
        bulk_output / "videos" / "ep00.mp4").read_bytes()
    r = client.get("/api/compare", params={"id": "ep00"})
    assert r.status_code == 404 and "no reference" in r.json()["detail"]


def test_page_and_assets_ship_in_the_package_without_external_urls(client: TestClient) -> None:
    html = client.get("/").text
    assert 'src="static/view.js"' in html
    for name in ("view.js", "view.css"):
        body = client.get(f"/static/{name}").text
        assert "http://" not in body.replace("http://www.w3.org/2000/svg", "") and "https://" not in body
    assert "https://" not in html and "http://" not in html
    assert client.get("/static/../app.py").status_code == 404


@pytest.mark.parametrize("status, expected", [("ok", "ok"), ("failed", "failed"), (200, "ok"), ("200", "ok"),
                                              (500, "failed"), (None, "ok"), (422, "failed")])
def test_status_of_either_layout(status: object, expected: str) -> None:
    assert normalize_status(status) == expected


def test_official_layout_top_level_columns_and_int_status(tmp_path: Path) -> None:
    """Issue 11's layout: status 200 / 4xx ints, source keys as top-level columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "out" / "videos").mkdir(parents=True)
    table = pa.table({
        "row_id": ["a", "b", "c"], "file_name": ["videos/a.mp4", "videos/b.mp4", ""], "status": [200, 200, 422],
        "error": [None, None, "bad"], "source_episode": [None, "a", "a"],
    })
    pq.write_table(table, tmp_path / "out" / "metadata.parquet")
    (tmp_path / "out" / "videos" / "a.mp4").write_bytes(b"x")
    (tmp_path / "out" / "videos" / "b.mp4").write_bytes(b"y")
    catalog = Catalog(DirStore(tmp_path / "out"), parent_key="source_episode")
    page = catalog.page()
    assert page.counts == {"all": 3, "ok": 2, "failed": 1, "flagged": 0}
    assert catalog.parent_of("b") == "a" and catalog.parent_of("c") is None  # c failed: nothing to compare
    assert catalog.row("b").source["source_episode"] == "a"


def test_journal_of_a_run_still_going_is_read(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    lines = [{"row_id": "a", "status": "failed", "error": "boom"}, {"row_id": "a", "status": "ok", "error": None},
             {"row_id": "b", "status": "failed", "error": "x"}]
    text = "".join(json.dumps(e) + "\n" for e in lines) + '{"row_id": "cut'
    (out / "metadata.journal.jsonl").write_text(text)
    page = Catalog(DirStore(out)).page(sort="row_id")
    assert [(r["row_id"], r["status"]) for r in page.rows] == [("a", "ok"), ("b", "failed")]


def test_missing_output_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        open_store(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no metadata table"):
        open_view(str(tmp_path))
    with pytest.raises(ValueError, match="ftp://x"):
        open_store("ftp://x")


def test_first_page_of_20000_rows_under_a_second(tmp_path: Path) -> None:
    """The issue's bound: 20,000 rows, server-side pages; open + page HTML + first page < 1 s.

    The best of three fresh opens is compared: this machine is shared, and a neighbour's
    burst should not fail a bound that the code meets several times over when left alone.
    """
    from dream.bulk.records import ParquetEntryWriter, entry_for

    out = tmp_path / "big"
    (out / "videos").mkdir(parents=True)
    writer = ParquetEntryWriter(str(out / "metadata.parquet"))
    for i in range(20_000):
        failed = i % 97 == 0
        writer.add(entry_for(f"row{i:05d}", {"status": "failed" if failed else "ok", "error": "x" if failed else None,
                                             "frames": 49, "cost_usd": 0.01, "seed": i,
                                             "source_metadata": {"episode": i // 10}},
                             file_name=f"videos/row{i:05d}.mp4", failed=failed))
    writer.close()
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        client = TestClient(open_view(str(out)))
        assert client.get("/").status_code == 200
        page = client.get("/api/rows", params={"limit": 60}).json()
        timings.append(time.perf_counter() - start)
    assert page["total"] == 20_000 and len(page["rows"]) == 60 and page["counts"]["failed"] == 207
    last = client.get("/api/rows", params={"offset": 19_980, "limit": 60, "sort": "seed", "desc": "true"}).json()
    assert len(last["rows"]) == 20 and last["rows"][-1]["row_id"] == "row00000"
    assert min(timings) < 1.0, f"first page took {[round(t, 2) for t in timings]} s"


def test_rows_of_a_run_still_writing_into_the_folder_show_up(tmp_path: Path) -> None:
    """A dir sink rebuilds metadata.parquet only at finalize(); the viewer follows its journal meanwhile."""
    import os

    from dream.io import RolloutSink
    from dream.io.types import RolloutRecord

    out = tmp_path / "out"
    sink = RolloutSink.dir(out)
    sink.write(RolloutRecord("a", b"mp4-a", {"status": "ok"}))
    sink.finalize()
    client = TestClient(open_view(str(out)))
    assert client.get("/api/rows").json()["total"] == 1
    sink.write(RolloutRecord("b", b"mp4-b", {"status": "ok"}))  # journalled, not yet in the table
    journal = out / "metadata.journal.jsonl"
    st = (out / "metadata.parquet").stat()
    os.utime(journal, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # coarse-mtime filesystems
    assert sorted(r["row_id"] for r in client.get("/api/rows").json()["rows"]) == ["a", "b"]
    sink.finalize()
    assert client.get("/api/rows").json()["total"] == 2


def test_a_missing_or_broken_mp4_is_a_clear_error_not_a_crash(bulk_output: Path, tmp_path: Path) -> None:
    import shutil

    out = Path(shutil.copytree(bulk_output, tmp_path / "bulk"))
    (out / "videos" / "ep00.mp4").unlink()
    (out / "videos" / "ep01.mp4").write_bytes(b"not an mp4")
    client = TestClient(open_view(str(out)))
    r = client.get("/api/thumb", params={"id": "ep00"})
    assert r.status_code == 404 and "'videos/ep00.mp4' is not in" in r.json()["detail"]
    r = client.get("/api/compare", params={"id": "ep00_aug1"})  # its parent's video is gone
    assert r.status_code == 404 and "ep00.mp4" in r.json()["detail"]
    r = client.get("/api/strip", params={"id": "ep01"})
    assert r.status_code == 422
