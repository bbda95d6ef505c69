"""Fixtures of the server tests.

* `live_server` (session): a real ``dream serve`` in a uvicorn subprocess on 127.0.0.1 and
  a free port, serving the built-in ``pusht-96`` plus ``tiny-16``; stopped by pid. Keys are minted in its SQLite ledger first.
* `make_client` (function): an in-process app (tiny-16 by default) behind a Starlette
  TestClient, for everything that does not need a socket.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dream.server.process import ServerProcess
from tests.server import tiny

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package", autouse=True)
def tiny_specs() -> Iterator[None]:
    """The tiny test specs exist only while a server test runs (other folders never see them)."""
    with tiny.installed():
        yield


# The spec the end-to-end tests run: the real built-in model, whose weights ship in the package.
SPEC = "pusht-96"
SPEC_RES = 96


# --------------------------------------------------------------------------- inputs


def frame_array(size: int = SPEC_RES, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 235, np.uint8)
    y, x = rng.integers(size // 4, 3 * size // 4, 2)
    img[y - 3 : y + 3, x - 3 : x + 3] = (30, 60, 200)
    return img


def actions_array(T: int = 4, seed: int = 0) -> np.ndarray:
    """Push-T style targets in the 512² workspace (tiny-16 reads them as pixel shifts)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(100, 400, (T, 2)).astype(np.float32)


def png(arr: np.ndarray, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    from PIL import Image

    img = Image.fromarray(arr, "RGB").convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def npy(arr: Any, **kw: Any) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, **kw)
    return buf.getvalue()


def predict_files(frame: bytes | None = None, actions: bytes | None = None) -> dict[str, Any]:
    return {
        "frame": ("frame.png", frame if frame is not None else png(frame_array(16)), "image/png"),
        "actions": ("actions.npy", actions if actions is not None else npy(actions_array()), "application/octet-stream"),
    }


# --------------------------------------------------------------------------- live server


@dataclass
class LiveServer:
    url: str
    pid: int
    db_url: str
    keys: dict[str, str]
    log_path: Path

    def ledger(self) -> Any:
        from dream.server.services.db import Database
        from dream.server.services.ledger import Ledger

        return Ledger(Database(self.db_url))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    from dream.server.services.db import Database
    from dream.server.services.ledger import KeyLimits, Ledger

    d = tmp_path_factory.mktemp("live")
    db_url = f"sqlite:///{d / 'ledger.sqlite3'}"
    ledger = Ledger(Database(db_url))
    keys = {
        "rich": ledger.create_key("rich", credits_mils=50_000_000).key,
        "official": ledger.create_key("official", credits_mils=50_000_000).key,
        "poor": ledger.create_key("poor", credits_mils=3).key,
        "revoked": ledger.create_key("revoked", credits_mils=10_000).key,
        # One request, then 429 for a long while: the rate-limit paths without waiting.
        "limited": ledger.create_key("limited", credits_mils=10_000, limits=KeyLimits(rate_limit_rps=0.01, burst=1)).key,
    }
    ledger.revoke_key(keys["revoked"])
    ledger.db.dispose()
    specs = [SPEC, "tiny-16"]
    args = ["--db", db_url, "--rate-limit", "1000", "--burst", "1000", "--max-concurrent", "64", "--threads", "1",
            "--data-dir", str(d / "data"), "--url-secret", "test-secret", "--max-body-mb", "4"]
    for s in specs:
        args += ["--spec", s]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DREAM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    server = ServerProcess(args, module="tests.server.serve_main", cwd=REPO, env=env, log_path=d / "serve.log")
    server.start(timeout_s=180)  # a real uvicorn process on a free port; stopped by pid below
    try:
        yield LiveServer(url=server.url, pid=server.pid, db_url=db_url, keys=keys, log_path=d / "serve.log")
    finally:
        server.stop()


# --------------------------------------------------------------------------- in-process apps


@dataclass
class AppHandle:
    app: Any
    client: Any  # starlette TestClient (an httpx.Client)
    services: Any

    def key(self, name: str = "acme", credits_mils: int = 1_000_000) -> str:
        return self.services.ledger.create_key(name, credits_mils=credits_mils).key

    def auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[Callable[..., AppHandle]]:
    """Build an app from Settings overrides, start it (lifespan) and wait until it is ready."""
    from fastapi.testclient import TestClient

    from dream.server import Settings, create_app

    stack = contextlib.ExitStack()
    counter = iter(range(1000))

    def make(*, wait_ready: bool = True, **overrides: Any) -> AppHandle:
        n = next(counter)
        opts: dict[str, Any] = {
            "specs": ["tiny-16"],
            "db_url": f"sqlite:///{tmp_path / f'ledger{n}.sqlite3'}",
            "data_dir": str(tmp_path / f"data{n}"),
            "batch_window_ms": 0,
            "rate_limit_rps": 0,
            "max_concurrent_rollouts": 0,
            "url_secret": "s3cret",
        }
        opts.update(overrides)
        app = create_app(Settings(**opts))
        client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
        services = app.state.services
        if wait_ready:
            assert services.readiness.wait(60), "models did not load"
        return AppHandle(app, client, services)

    with stack:
        yield make
