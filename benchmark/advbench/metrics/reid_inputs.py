"""Checks and conversions of the re-ID evaluators' inputs, and the chunk size they work in.

Features, labels and distance matrices arrive as tensors, NumPy arrays or sequences; these helpers
turn them into tensors on the right device and dtype (without a copy where none is needed) and
raise :class:`AdvbenchError` with a precise message on bad shapes, dtypes or NaN/Inf rows. Every
evaluator processes queries in chunks of about ``CHUNK_ELEMENTS`` distances, so memory stays
bounded whatever the gallery size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from advbench.api import AdvbenchError

__all__ = ["CHUNK_ELEMENTS", "ArrayLike", "default_chunk_size"]

# Distances (queries x gallery) handled per chunk when no chunk_size is given. The distances, the
# sorted values, the sort indices and the inverse permutation take 20 bytes per element, so 2**22
# elements keep the extra memory near 85 MB.
CHUNK_ELEMENTS = 2**22
_DISTANCES = ("cosine", "euclidean")

ArrayLike = Tensor | np.ndarray | Sequence[Any]


def _tensor(x: ArrayLike, device: Any = None) -> Tensor:
    """A tensor view of ``x`` (no copy for tensors and arrays already on ``device``)."""
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    return t if device is None else t.to(device=device)


def _labels(x: ArrayLike, name: str, n: int, device: torch.device) -> Tensor:
    t = _tensor(x)
    if t.ndim != 1 or t.shape[0] != n:
        raise AdvbenchError(f"{name} must be 1-D with {n} entries, got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex():
        raise AdvbenchError(f"{name} must hold integers, got {t.dtype}")
    return t.to(device=device, dtype=torch.int64)


def default_chunk_size(num_gallery: int, per_query: int = 1) -> int:
    """Queries per chunk so that chunk x gallery (x ``per_query``) stays near ``CHUNK_ELEMENTS``."""
    return max(1, CHUNK_ELEMENTS // max(1, num_gallery * per_query))


def _check_chunk(chunk_size: int | None, num_gallery: int, per_query: int = 1) -> int:
    if chunk_size is None:
        return default_chunk_size(num_gallery, per_query)
    if int(chunk_size) < 1:
        raise AdvbenchError(f"chunk_size must be >= 1, got {chunk_size}")
    return int(chunk_size)


def _check_max_rank(max_rank: int) -> int:
    if int(max_rank) < 1:
        raise AdvbenchError(f"max_rank must be >= 1, got {max_rank}")
    return int(max_rank)


def _check_distance(distance: str) -> None:
    if distance not in _DISTANCES:
        raise AdvbenchError(f"unknown distance {distance!r}: use 'cosine' or 'euclidean'")


def _bad_rows(x: Tensor) -> int:
    """Rows of ``x`` holding NaN or Inf, checked in blocks so no full-size mask is allocated."""
    rows = max(1, CHUNK_ELEMENTS // max(1, x[0].numel()))
    return sum(int((~torch.isfinite(b)).flatten(1).any(1).sum()) for b in x.split(rows))


def _features(x: ArrayLike, name: str, device: Any = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Checked 2-D features in ``dtype`` on ``device``: the input itself when it already is."""
    t = _tensor(x)
    if t.ndim != 2 or t.shape[0] == 0:
        raise AdvbenchError(f"{name} must be 2-D [N, D] with N > 0, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise AdvbenchError(f"{name} must be floating point, got {t.dtype}")
    t = t.to(device=device, dtype=dtype)  # checked after the cast: float64 beyond float32 is Inf
    bad = _bad_rows(t)
    if bad:
        raise AdvbenchError(f"{name}: {bad} of {t.shape[0]} feature rows contain NaN or Inf")
    return t


def _prepare(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    dist = _tensor(distmat)
    if dist.ndim != 2:
        raise AdvbenchError(f"distmat must be 2-D [num_query, num_gallery], got shape {tuple(dist.shape)}")
    num_q, num_g = dist.shape
    if num_q == 0 or num_g == 0:
        raise AdvbenchError(f"cannot evaluate with {num_q} queries and {num_g} gallery items")
    if not dist.is_floating_point():
        dist = dist.to(torch.float64)
    elif dist.dtype in (torch.float16, torch.bfloat16):
        dist = dist.to(torch.float32)  # exact, and sorted natively everywhere
    dev = dist.device
    return (
        dist,
        _labels(q_pids, "q_pids", num_q, dev),
        _labels(g_pids, "g_pids", num_g, dev),
        _labels(q_camids, "q_camids", num_q, dev),
        _labels(g_camids, "g_camids", num_g, dev),
    )
