"""Out of memory halves the batch and redoes the rows that failed; the result does not change."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_VICTIMS

from advbench import hookimpl, leaderboard
from advbench.api import AdvbenchError, Attack, AttackSpec
from advbench.batching import is_out_of_memory, run_batches
from advbench.plugins import build_registry, discover
from advbench.runner import run


def _oom(limit: int):
    seen: list[tuple[int, int]] = []

    def step(rows: slice) -> None:
        if rows.stop - rows.start > limit:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate a batch of {rows.stop - rows.start}"
            )
        seen.append((rows.start, rows.stop))

    return step, seen


def test_batches_halve_on_out_of_memory_and_cover_every_row_once() -> None:
    step, seen = _oom(limit=3)
    shrunk: list[int] = []
    final = run_batches(10, 8, step, on_shrink=shrunk.append)
    assert shrunk == [4, 2] and final == 2
    assert seen == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]


def test_other_errors_and_out_of_memory_at_batch_one_are_raised() -> None:
    step, _ = _oom(limit=0)
    with pytest.raises(torch.OutOfMemoryError):
        run_batches(4, 4, step)
    with pytest.raises(ValueError):
        run_batches(4, 4, lambda rows: (_ for _ in ()).throw(ValueError("not memory")))
    with pytest.raises(AdvbenchError, match="batch size"):
        run_batches(4, 0, step)
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory")) and not is_out_of_memory(ValueError())


class _Greedy(Attack):
    """A deterministic attack that runs out of memory on batches larger than 4 queries."""

    name = "greedy"

    def perturb(self, victim, images, pids, camids, *, gallery=None):
        if images.shape[0] > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return (images + torch.where(images > 0.5, -1.0, 1.0) * self.eps / 255).clamp(0, 1)


class _Plugin:
    @hookimpl
    def advbench_attacks(self):
        return [AttackSpec(name="greedy", description="OOM above 4", build=_Greedy)]


@pytest.mark.slow
def test_a_cell_that_runs_out_of_memory_finishes_with_the_same_numbers(
    session_cache: Path, tmp_path: Path, capfd
) -> None:
    from test_runner import _tiny_config

    registry = build_registry(discover([("test-greedy", _Plugin())]))
    big = _tiny_config(session_cache, tmp_path / "big", attacks="greedy", batch_size=16, victims=TINY_VICTIMS)
    summary = run(big, registry)
    assert summary.done == 2 and not summary.failed
    assert "out of memory, crafting 4 queries at a time" in capfd.readouterr().err
    small = run(dataclasses.replace(big, out=tmp_path / "small", batch_size=4), registry)
    # the crafted queries are identical; the scores agree up to the feature extractor's batch size
    # (8 vs 32 images: CPU kernels may round differently, and a near tie on 16 queries moves mAP a little)
    for a, b in zip(summary.crafts, small.crafts, strict=True):
        assert np.array_equal(np.load(a.adv_file), np.load(b.adv_file))
    cols = ["source_victim", "target_victim", "ssim", "l2"]
    big_frame, small_frame = (
        leaderboard.results_frame(summary.records),
        leaderboard.results_frame(small.records),
    )
    pd.testing.assert_frame_equal(big_frame[cols], small_frame[cols])
    assert np.allclose(big_frame["adv_mAP"], small_frame["adv_mAP"], atol=0.5)
