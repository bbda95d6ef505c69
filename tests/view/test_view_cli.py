"""`dream view` as a user runs it: a subprocess serving the page over a bulk output."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("uvicorn")

DREAM = [sys.executable, "-m", "dream.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dream_view_serves_the_output(bulk_output: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([*DREAM, "view", str(bulk_output), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/api/rows", params={"status": "failed"}, timeout=5)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dream view did not come up: {proc.stderr.read()}") from None
                time.sleep(0.2)
        assert [r["row_id"] for r in page.json()["rows"]] == ["ep01_bad"]
        assert "<title>dream view</title>" in httpx.get(f"http://127.0.0.1:{port}/").text
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out


def test_dream_view_of_a_missing_folder_is_one_error_line(tmp_path: Path) -> None:
    res = subprocess.run([*DREAM, "view", str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [f"error: no such output folder: {str(tmp_path / 'nope')!r}"]


@pytest.mark.parametrize("cmd", ["view", "qc"])
def test_view_and_qc_have_help(cmd: str) -> None:
    res = subprocess.run([*DREAM, cmd, "--help"], capture_output=True, text=True, timeout=120, check=True)
    assert "usage: dream" in res.stdout and "hf://datasets/org/name" in res.stdout


def test_dream_view_on_a_busy_port_is_one_error_line(bulk_output: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = subprocess.run([*DREAM, "view", str(bulk_output), "--port", str(port)], capture_output=True, text=True,
                             timeout=120)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [f"error: cannot listen on 127.0.0.1:{port} (Address already in use); "
                                               "pick another --port"]
