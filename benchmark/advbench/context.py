"""What every task needs in the process it runs in: device, threads, determinism, plugins, victims.

:class:`WorkerEnv` is the picklable description a backend ships with each task;
:class:`TaskContext` is its live form in a worker process (built once per process by the local
backend, once per task on Ray). Pinning the thread count and the deterministic-algorithm switches
here is what makes both backends do the same arithmetic.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import advbench
from advbench.plugins import Registry
from advbench.utils import resolve_device
from advbench.victims import VictimLoader, VictimRef


@dataclass(frozen=True)
class WorkerEnv:
    """Run-wide settings every task obeys (see :class:`advbench.config.RunConfig`)."""

    cache_dir: Path
    device: str = "auto"
    threads: int = 0
    amp: bool = False
    progress: bool = False


def provenance(device: torch.device) -> dict[str, Any]:
    """Where a record's numbers came from: versions, device, commit."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "advbench_version": advbench.__version__,
        "git_commit": commit,
        "torch_version": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.machine()})",
        "python": sys.version.split()[0],
    }


def configure_determinism(device: torch.device) -> None:
    """On CUDA: deterministic cuDNN/cuBLAS kernels, so a task gives the same numbers on any worker."""
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)


class TaskContext:
    """The live environment of tasks in one process."""

    def __init__(self, env: WorkerEnv, registry: Registry | None = None) -> None:
        from advbench.plugins import get_registry

        self.env = env
        if env.threads > 0:
            torch.set_num_threads(env.threads)
        self.device = resolve_device(env.device)
        configure_determinism(self.device)
        self.registry = registry if registry is not None else get_registry()
        self.cache = Path(env.cache_dir)
        self.progress = env.progress
        self.provenance = provenance(self.device)
        self._loader = VictimLoader(self.registry, self.device)

    def victim(self, ref: VictimRef) -> Any:
        return self._loader(ref)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on CUDA when ``--amp`` is on; a no-op otherwise."""
        if self.env.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
