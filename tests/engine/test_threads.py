"""CPU thread policy: CPUs from affinity and cgroup quota, no spinning, threads= wiring."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import dream
from dream.engine import threads as policy
from dream.engine.engine import Engine


def _write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "50000\n"}, 0.5),  # period omitted: the kernel default
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu.max": "garbage here\n"}, None),
        ({}, None),
    ],
)
def test_cgroup_cpu_limit_reads_v2_and_v1(tmp_path: Path, files: dict[str, str], expected: float | None) -> None:
    for name, text in files.items():
        _write(tmp_path, name, text)
    assert policy.cgroup_cpu_limit(tmp_path) == expected


def test_usable_cpus_is_the_affinity_capped_by_the_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert policy.usable_cpus(cgroup_root=tmp_path) == affinity  # no quota files: no cap
    _write(tmp_path, "cpu.max", "50000 100000\n")  # half a CPU still needs one thread
    assert policy.usable_cpus(cgroup_root=tmp_path) == 1
    _write(tmp_path, "cpu.max", f"{(affinity + 5) * 100000} 100000\n")
    assert policy.usable_cpus(cgroup_root=tmp_path) == affinity


def test_usable_cpus_follows_the_affinity_mask_in_a_child() -> None:
    code = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); " \
        "from dream.engine.threads import usable_cpus; print(usable_cpus())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True])
def test_bad_thread_counts_are_refused_by_name(bad: object) -> None:
    with pytest.raises(ValueError, match=f"threads must be a positive int.*{bad!r}"):
        Engine(["shift-test"], threads=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads must be a positive int"):
        dream.Client(threads=bad)  # type: ignore[arg-type]


def test_client_threads_reach_the_embedded_engine_and_its_model_thread(shift_family: None) -> None:
    client = dream.Client(threads=1)
    engine = client.engine
    assert engine is not None and engine.threads == 1
    engine = Engine(["shift-test"], threads=1)
    engine.load("shift-test")
    import torch

    assert engine.on_engine_thread(torch.get_num_threads) == 1
    default = Engine(["shift-test"])
    default.load("shift-test")
    assert default.on_engine_thread(torch.get_num_threads) == policy.usable_cpus()


def test_client_threads_with_a_server_or_an_engine_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot be combined with a base_url"):
        dream.Client(base_url="http://127.0.0.1:9", threads=2)
    with pytest.raises(ValueError, match="engine="):
        dream.Client(engine=Engine(["pusht-96"]), threads=2)
    with pytest.raises(ValueError, match="cannot be combined with a base_url"):
        dream.AsyncClient(base_url="http://127.0.0.1:9", threads=2)


def test_engine_sets_a_passive_wait_policy_before_torch_loads() -> None:
    # (tests/conftest.py sets it for the suite; the children here start without it)
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = (
        "import os, sys; from dream.engine.engine import Engine; Engine(['pusht-96']); "
        "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["PASSIVE", "False"]
    mine = {**env, "OMP_WAIT_POLICY": "ACTIVE"}  # the user's choice wins
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=mine)
    assert out.stdout.split()[0] == "ACTIVE"
    late = "import torch; " + code  # too late to apply: say so
    out = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split()[0] == "None" and "OMP_WAIT_POLICY=PASSIVE" in out.stderr
