"""Run ``dream serve`` as a child process: for benchmarks, tests and notebooks.

    with ServerProcess(["--spec", "pusht-96", "--db", "sqlite:///ledger.sqlite3"]) as server:
        client = dream.Client(base_url=server.url, api_key=key)

Picks a free port on 127.0.0.1 unless given one, waits until ``/readyz`` answers 200
(models loaded and warmed up), and stops the process by its pid on exit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A ``dream serve`` child process (the `module` must accept ``serve …`` arguments)."""

    def __init__(
        self,
        serve_args: list[str],
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        module: str = "dream.server.commands",
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        log_path: str | Path | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.cmd = [sys.executable, "-m", module, "serve", "--host", host, "--port", str(self.port), *serve_args]
        self.cwd = cwd
        self.env = env
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self, timeout_s: float = 180.0, *, until: str = "/readyz") -> ServerProcess:
        """Start the process and wait until `until` answers 200: ``/readyz`` (models loaded,
        the default) or ``/healthz`` (listening; models may still be loading)."""
        import httpx

        out: Any = subprocess.DEVNULL
        if self.log_path is not None:
            self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
            out = self._log
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dream serve exited with code {self.proc.returncode}{self._tail()}")
            try:
                if httpx.get(self.url + until, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"dream serve was not ready after {timeout_s:.0f} s{self._tail()}")

    def _tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return ":\n" + self.log_path.read_text(errors="replace")[-3000:]

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
