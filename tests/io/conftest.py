"""Fixtures for the dream.io tests: a real S3 (moto server mode) and a local Hub stand-in."""

from __future__ import annotations

import socket
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # io_support, whatever the import mode

from io_support import HubStandIn


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    """moto's ThreadedMotoServer on 127.0.0.1 (a real HTTP S3 API), stopped at the end."""
    pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_kwargs(moto_endpoint: str) -> dict:
    return {
        "endpoint_url": moto_endpoint,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "region_name": "us-east-1",
    }


@pytest.fixture
def s3_bucket(s3_kwargs: dict):
    """A fresh bucket; yields (bucket name, boto3 client)."""
    import boto3

    client = boto3.client("s3", **s3_kwargs)
    name = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name, client


@pytest.fixture(scope="session")
def hub() -> HubStandIn:
    pytest.importorskip("huggingface_hub")
    server = HubStandIn().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub_repo(hub: HubStandIn) -> str:
    return f"test-org/rollouts-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
def _hf_offline_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep datasets / huggingface_hub caches out of the developer's home."""
    cache = tmp_path_factory.getbasetemp() / "hf-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
    try:
        import datasets.config  # read at import time: patch the module too
    except ImportError:
        pass
    else:
        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache / "datasets")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
