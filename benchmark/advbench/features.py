"""Batched feature extraction, with clean features cached on disk by (victim weights, images)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from advbench.api import ImageSplit, Victim
from advbench.batching import run_batches
from advbench.io import atomic_torch_save, load_torch_verified


@torch.no_grad()
def extract(
    victim: Victim,
    split: ImageSplit,
    *,
    device: torch.device,
    batch_size: int = 128,
    progress: bool = True,
    desc: str = "features",
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> Tensor:
    """Features of every image of ``split`` (float32, on CPU), in order; memory bounded by the batch."""
    victim.eval()
    out: Tensor | None = None
    bar = tqdm(total=len(split), desc=desc, leave=False, dynamic_ncols=True, disable=not progress)

    def step(rows: slice) -> None:
        nonlocal out
        with autocast():
            feats = victim.features(split.batch(rows, device)).float().cpu()
        if out is None:
            out = torch.empty((len(split), feats.shape[1]), dtype=torch.float32)
        out[rows] = feats
        bar.update(rows.stop - rows.start)

    run_batches(len(split), batch_size, step)
    bar.close()
    assert out is not None
    return out


def extract_cached(
    victim: Victim,
    split: ImageSplit,
    *,
    cache_file: Path | None,
    device: torch.device,
    batch_size: int = 128,
    progress: bool = True,
    desc: str = "features",
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> Tensor:
    """:func:`extract`, read from ``cache_file`` when it is there, intact (checksum) and of the
    right number of rows; otherwise computed and written there."""
    if cache_file is not None:
        feats = load_torch_verified(cache_file)
        if isinstance(feats, Tensor) and feats.ndim == 2 and feats.shape[0] == len(split):
            return feats
    feats = extract(
        victim, split, device=device, batch_size=batch_size, progress=progress, desc=desc, autocast=autocast
    )
    if cache_file is not None:
        atomic_torch_save(feats, cache_file)
    return feats
