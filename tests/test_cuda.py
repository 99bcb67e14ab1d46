"""CUDA paths: bf16 autocast stays within half a point of fp32; skipped where torch sees no GPU."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from advbench import leaderboard
from advbench.plugins import build_registry, discover
from advbench.runner import run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_amp_keeps_white_box_map_within_half_a_point(session_cache: Path, tmp_path: Path) -> None:
    from test_runner import _tiny_config

    registry = build_registry(discover())
    fp32 = _tiny_config(session_cache, tmp_path / "fp32", attacks="fgsm,pgd", device="cuda")
    amp = dataclasses.replace(fp32, out=tmp_path / "amp", amp=True)
    frames = [leaderboard.results_frame(run(c, registry).records) for c in (fp32, amp)]
    for frame in frames:
        assert (frame.device.str.len() > 0).all()
    white = [f[f.setting == "whitebox"].set_index(["attack", "source_victim"]) for f in frames]
    assert (white[0].clean_mAP - white[1].clean_mAP).abs().max() <= 0.5
    assert (white[0].adv_mAP - white[1].adv_mAP).abs().max() <= 0.5
