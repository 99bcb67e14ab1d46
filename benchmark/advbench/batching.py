"""Batches that shrink instead of crashing: on out-of-memory, halve the batch and retry the same rows.

A grid of hundreds of cells meets victims and resolutions of every size; one batch size that fits
them all wastes the GPU, and one that does not kills a day's run. Crafting and feature extraction
go through :func:`run_batches`, which halves the batch on ``torch.OutOfMemoryError`` and redoes the
rows that failed, so only speed, never the result of a deterministic attack, depends on memory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from advbench.api import AdvbenchError


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OOM error, or the RuntimeError older CUDA/MPS paths raise for it."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def run_batches(
    n: int,
    batch_size: int,
    step: Callable[[slice], None],
    *,
    on_shrink: Callable[[int], None] | None = None,
) -> int:
    """Call ``step(rows)`` over ``range(n)`` in consecutive slices; returns the final batch size.

    ``step`` must have no lasting effect when it raises (write results only once a batch is done).
    """
    if batch_size < 1:
        raise AdvbenchError(f"batch size must be >= 1, got {batch_size}")
    start = 0
    while start < n:
        rows = slice(start, min(n, start + batch_size))
        try:
            step(rows)
        except Exception as exc:
            if not is_out_of_memory(exc) or batch_size == 1:
                raise
            del exc
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch_size = max(1, batch_size // 2)
            if on_shrink is not None:
                on_shrink(batch_size)
            continue
        start = rows.stop
    return batch_size
