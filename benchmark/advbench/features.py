"""Batched feature extraction, with clean features cached on disk by (victim checkpoint, images)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from advbench.api import ImageSplit, Victim
from advbench.store import atomic_torch_save
from advbench.utils import progress_bar


@torch.no_grad()
def extract(
    victim: Victim,
    split: ImageSplit,
    *,
    device: torch.device,
    batch_size: int = 128,
    progress: bool = True,
    desc: str = "features",
) -> Tensor:
    """Features of every image of ``split`` (float32, on CPU), in order."""
    victim.eval()
    chunks = []
    starts = range(0, len(split), batch_size)
    for start in progress_bar(starts, total=len(starts), desc=desc, enabled=progress):
        chunks.append(victim.features(split.batch(slice(start, start + batch_size), device)).float().cpu())
    return torch.cat(chunks)


def extract_cached(
    victim: Victim,
    split: ImageSplit,
    *,
    cache_file: Path | None,
    device: torch.device,
    batch_size: int = 128,
    progress: bool = True,
    desc: str = "features",
) -> Tensor:
    """:func:`extract`, read from ``cache_file`` when it exists with the right number of rows."""
    if cache_file is not None and cache_file.exists():
        try:
            feats = torch.load(cache_file, weights_only=True)
            if feats.shape[0] == len(split):
                return feats
        except Exception:
            pass  # unreadable cache entry: recompute and overwrite it
    feats = extract(victim, split, device=device, batch_size=batch_size, progress=progress, desc=desc)
    if cache_file is not None:
        atomic_torch_save(feats, cache_file)
    return feats
