"""dream view on large outputs: open + first page, and a sorted deep page, vs the row count.

    python bench/view_pages.py [--repeats 5]

Builds metadata tables of 2,000 and 20,000 rows (the dir sink's writer, one JSON source
metadata per row), then measures, in one run on this machine, through the HTTP app
(Starlette TestClient, no socket):
  * open: read the table + the page HTML + the first page of 60 rows (what a browser waits
    for), median of fresh opens;
  * a page half way down, sorted by a numeric column (descending), median;
and prints the 20,000 / 2,000 ratios (10.0 would be linear in the rows).
Absolute figures are printed with the machine they came from.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _machine import describe_machine  # bench/ is on sys.path when run as a script


def build(root: Path, rows: int) -> Path:
    from dream.bulk.records import ParquetEntryWriter, entry_for

    out = root / f"rows{rows}"
    (out / "videos").mkdir(parents=True)
    writer = ParquetEntryWriter(str(out / "metadata.parquet"))
    for i in range(rows):
        writer.add(entry_for(f"row{i:06d}", {"frames": 49, "seed": i, "cost_usd": 0.0245,
                                             "source_metadata": {"episode": i // 10, "source_episode": f"p{i // 4}"}},
                             file_name=f"videos/row{i:06d}.mp4"))
    writer.close()
    return out


def measure(out: Path, rows: int, repeats: int) -> tuple[float, float]:
    from fastapi.testclient import TestClient

    from dream.view import open_view

    opens, deep = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        client = TestClient(open_view(str(out)))
        client.get("/")
        client.get("/api/rows", params={"limit": 60}).raise_for_status()
        opens.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        client.get("/api/rows", params={"offset": rows // 2, "limit": 60, "sort": "seed", "desc": "true"}
                   ).raise_for_status()
        deep.append(time.perf_counter() - t0)
    return statistics.median(opens), statistics.median(deep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(describe_machine())
    results = {}
    with tempfile.TemporaryDirectory(prefix="dream-bench-view-") as tmp:
        for rows in (2_000, 20_000):
            results[rows] = measure(build(Path(tmp), rows), rows, args.repeats)
            print(f"{rows:>6} rows: open + first page {results[rows][0] * 1000:7.1f} ms, "
                  f"sorted deep page {results[rows][1] * 1000:6.1f} ms (median of {args.repeats})")
    print(f"20,000 / 2,000 rows: open {results[20_000][0] / results[2_000][0]:.1f}x, "
          f"sorted page {results[20_000][1] / results[2_000][1]:.1f}x")


if __name__ == "__main__":
    main()
