"""Small shared helpers: stable hashing, seeding, devices, progress bars."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

T = TypeVar("T")


def stable_hash(*parts: Any, length: int = 16) -> str:
    """Hex digest of JSON-serialisable parts; identical inputs give identical keys across runs."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def file_hash(path: Any, length: int = 16) -> str:
    """Content hash of a file (checkpoints), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) for one unit of work."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without a GPU is an error, not a silent CPU run."""
    from advbench.api import AdvbenchError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AdvbenchError(
            "--device cuda was asked for but torch sees no CUDA device; use --device auto or cpu"
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise AdvbenchError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None


def progress_bar(
    it: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool = True
) -> Iterator[T]:
    """tqdm over ``it`` (written to stderr), or ``it`` itself when disabled."""
    if not enabled:
        yield from it
        return
    yield from tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True)
