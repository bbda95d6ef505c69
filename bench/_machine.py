"""One line naming the machine a benchmark ran on (printed next to every absolute figure)."""

from __future__ import annotations

import os
import platform
import sys


def describe_machine() -> str:
    """CPU model, logical CPUs, OS, Python, and torch (version, threads, GPU) when loaded."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    parts = [cpu, f"{os.cpu_count()} logical CPUs", f"{platform.system()} {platform.release()}",
             f"Python {platform.python_version()}"]
    torch = sys.modules.get("torch")
    if torch is not None:
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads, {gpu})")
    return ", ".join(parts)
