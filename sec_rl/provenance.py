"""What a result was made with: package versions, threads, Python and the machine.

Every result file and report the benchmarks, the demos and the pipeline write carries
:func:`environment_info`, because the same seed gives other numbers under other package versions or
thread counts (see ``docs/reproducibility.md``): a figure without its environment cannot be checked.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

#: Distributions whose versions change training numbers; sec-rl's own version is listed too.
PACKAGES = ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "numpy", "sec-rl")
#: Environment variables that set thread pools (torch, OpenMP, BLAS) when a process starts.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (``None`` when it is not installed)."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _torch_info() -> dict[str, Any]:
    if importlib.util.find_spec("torch") is None:
        return {"torch_threads": None, "cuda": None, "gpu": None}
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"torch_threads": torch.get_num_threads(), "cuda": torch.version.cuda, "gpu": gpu}


def _git_commit() -> str | None:
    """The sec-rl checkout's commit (``+dirty`` with local changes), or ``None`` for an installed wheel."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def environment_info() -> dict[str, Any]:
    """JSON-serialisable description of this process's environment, for result files and reports.

    Keys: ``packages`` (see :data:`PACKAGES`), ``torch_threads``, ``cuda``, ``gpu``, ``thread_env``,
    ``python``, ``platform``, ``machine``, ``cpu_count``, ``sec_rl_commit``. Imports torch when it is
    installed (to read its thread count).
    """
    return {
        "packages": package_versions(),
        **_torch_info(),
        "thread_env": {name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ},
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "sec_rl_commit": _git_commit(),
    }


def describe_environment(info: dict[str, Any] | None = None) -> str:
    """One line for a markdown report, e.g. ``torch 2.13.0, trl 1.16.0, ...; 2 torch threads; Python 3.11.2 ...``."""
    info = info or environment_info()
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v is not None)
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
    return (
        f"{packages}; {info['torch_threads']} torch threads; Python {info['python']} on {info['platform']} "
        f"({info['cpu_count']} CPUs{gpu})"
    )
