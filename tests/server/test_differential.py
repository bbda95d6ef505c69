"""The differential test of issue 11: code written for the official SDK 0.5.0 runs
unchanged on ours.

The same scenario scripts (tests/server/diff_scenarios.py) run with the official client
(.venv-official) and with ours, against one `dream serve` (and ours embedded), a scripted
HTTP server (retry attempts) and a server whose model is still loading (warm-up). Each
prints facts; every fact that differs from the official client's must be listed in the
README section "Differences from the official SDK 0.5.0", so a new difference fails here
until it is either fixed or documented.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tests.server.conftest import REPO

OFFICIAL_PY = REPO / ".venv-official" / "bin" / "python"
SCRIPT = Path(__file__).with_name("diff_scenarios.py")
SPEC = "tiny-16"
SECTION = "## Differences from the official SDK 0.5.0"

pytestmark = pytest.mark.skipif(
    not OFFICIAL_PY.exists(),
    reason="the official client's virtualenv .venv-official is missing; create it with `make official-client`",
)


def documented_differences() -> list[str]:
    """Fact ids (fnmatch patterns) listed in the README section, as `` `id` `` tokens."""
    text = (REPO / "README.md").read_text()
    assert SECTION in text, f"README.md has no section {SECTION!r}"
    body = text.split(SECTION, 1)[1]
    body = body.split("\n## ", 1)[0]
    return re.findall(r"`((?:attr|except|record|parquet|error|attempts|warmup|InputValidationError)\.[^`\s]+)`", body)


def run_scenario(scenario: str, who: str, tmp_path: Path, **env_extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DREAM_", "PYTHON"))}
    env.update(SPEC=SPEC, RES="16", OUT=str(tmp_path / f"{who}-{scenario}"), **env_extra)
    if who == "official":
        python = str(OFFICIAL_PY)
    else:
        python = sys.executable
        env["PYTHONPATH"] = str(REPO / "src")
        if who == "embedded":
            env["EMBEDDED"] = "1"
            env.pop("DREAM_BASE_URL", None)
    # cwd outside the repo, so `import dream` finds only the package this interpreter is given.
    proc = subprocess.run([python, str(SCRIPT), scenario], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, f"{who} {scenario} failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def differences(official: dict, ours: dict) -> dict[str, tuple]:
    return {k: (official.get(k, "<absent>"), ours.get(k, "<absent>"))
            for k in sorted({*official, *ours}) if official.get(k, "<absent>") != ours.get(k, "<absent>")}


def undocumented(diffs: dict[str, tuple]) -> dict[str, tuple]:
    listed = documented_differences()
    return {k: v for k, v in diffs.items() if not any(fnmatch.fnmatchcase(k, pat) for pat in listed)}


def test_the_readme_lists_differences_by_fact_id() -> None:
    ids = documented_differences()
    assert "error.frame_bytes_not_an_image.class" in ids and len(ids) == len(set(ids))


@pytest.mark.parametrize("scenario", ["attributes", "records", "errors"])
def test_scenarios_against_one_server_and_embedded(scenario: str, live_server, tmp_path: Path) -> None:
    http = {"DREAM_BASE_URL": live_server.url, "DREAM_API_KEY": live_server.keys["rich"]}
    official = run_scenario(scenario, "official", tmp_path, **http)
    for who, env in (("ours", http), ("embedded", {})):
        ours = run_scenario(scenario, who, tmp_path, **env)
        diffs = differences(official, ours)
        assert not undocumented(diffs), f"{who}: differences from 0.5.0 not listed in README.md {SECTION!r}: " + (
            json.dumps(undocumented(diffs), indent=1, default=str)
        )
    # What the issue asked for, checked outright (not only "listed").
    if scenario == "attributes":
        assert all(v == "ok" for k, v in ours.items() if k.startswith("attr."))
    if scenario == "records":
        assert ours["record.value.seed"] == official["record.value.seed"] == 0
        assert ours["record.key.status"] == "int" and ours["parquet.col.seed"] == official["parquet.col.seed"] == "int64"
    if scenario == "errors":
        assert ours["error.frame_bytes_not_an_image.caught_by.ValidationError"] is True


# -- a scripted server: the number of attempts each client makes ------------------------------


@pytest.fixture
def scripted_server() -> Iterator[tuple[str, list[int], list[int]]]:
    """POST /v1/predict answers the statuses in `script` in turn (and counts the calls);
    GET /v1/specs lists tiny-16."""
    from dream.engine.video import encode_mp4

    mp4 = encode_mp4(np.zeros((5, 16, 16, 3), np.uint8), 10)
    script: list[int] = []
    calls: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-DreamEngine-Request-Id", f"req_{len(calls)}")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.startswith("/v1/specs"):
                body = {"object": "list", "default_spec": SPEC, "default_price_usd_per_frame": 0.0001,
                        "specs": [{"slug": SPEC, "price_per_frame_usd": 0.0001}]}
                self._send(200, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, b'{"detail": "not scripted"}', "application/json")

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self.path.startswith("/v1/predict"):
                self._send(404, b'{"detail": "not scripted"}', "application/json")
                return
            status = script.pop(0) if script else 500
            calls.append(status)
            if status == 200:
                self._send(200, mp4, "video/mp4", {"X-DreamEngine-Engine-Wall-Ms": "1.5",
                                                   "X-DreamEngine-Estimated-Charge-USD": "0.0005"})
            else:
                self._send(status, json.dumps({"detail": f"scripted {status}"}).encode(), "application/json")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script, calls
    finally:
        server.shutdown()
        server.server_close()


def test_retry_attempts_against_a_scripted_server(scripted_server, tmp_path: Path) -> None:
    url, script, calls = scripted_server
    results = {}
    for who in ("official", "ours"):
        script[:] = [503, 503, 503, 200, 500]
        calls.clear()
        results[who] = {**run_scenario("attempts", who, tmp_path, SCRIPTED_URL=url), "attempts.server_calls": list(calls)}
    diffs = differences(results["official"], results["ours"])
    assert not undocumented(diffs), json.dumps(undocumented(diffs), indent=1, default=str)
    # 503 ×3 then 200 with max_attempts=5: one row ok after 4 attempts; a 500 is not retried.
    assert results["ours"]["attempts.server_calls"] == [503, 503, 503, 200, 500]
    assert results["ours"]["attempts.transient_then_ok.ok"] == 1
    assert results["ours"]["attempts.server_error.failure_attempts"] == [1]


# -- warm-up: a script started together with `dream serve` --------------------------------------


def test_a_script_started_with_the_server_waits_for_warm_up(tmp_path: Path) -> None:
    from dream.server.process import ServerProcess

    results = {}
    for who in ("official", "ours"):
        env = {k: v for k, v in os.environ.items() if not k.startswith("DREAM_")}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "src")])
        env["TINY_LOAD_DELAY_S"] = "6"  # far longer than the official client's retries last (~0.75 s)
        server = ServerProcess(
            ["--spec", SPEC, "--no-auth", "--db", f"sqlite:///{tmp_path / f'{who}.sqlite3'}", "--threads", "1"],
            module="tests.server.serve_main", cwd=REPO, env=env, log_path=tmp_path / f"{who}-serve.log",
        )
        server.start(timeout_s=180, until="/healthz")  # listening; the model still loads
        try:
            results[who] = run_scenario("warmup", who, tmp_path, DREAM_BASE_URL=server.url, DREAM_API_KEY="dre_any")
        finally:
            server.stop()
        log = (tmp_path / f"{who}-serve.log").read_text()
        assert "holding a request" in log and "ERROR" not in log, log[-2000:]
    assert results["official"] == results["ours"] == {"warmup.predict": "ok"}
