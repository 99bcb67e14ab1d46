"""Shared fixtures: a private cache per test session and a tiny CPU-sized grid configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

# Small enough for 2 CPU cores: 32x16 crops, a few identities, victims trained for a few steps.
TINY_SYNTHETIC = {
    "height": 32,
    "width": 16,
    "train_ids": 16,
    "train_images_per_id": 6,
    "test_ids": 8,
    "queries_per_id": 2,
    "gallery_per_id": 4,
    "distractor_ids": 4,
    "distractor_images": 2,
}
TINY_VICTIMS = "mobilenetv3_small_100,timm:mobilenetv3_small_050"


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session, so that tiny victims are trained once and reused by every test."""
    cache = tmp_path_factory.mktemp("advbench-cache")
    os.environ["ADVBENCH_CACHE"] = str(cache)
    return cache


def tiny_cli(cache: Path, out: Path, *extra: str) -> list[str]:
    """CLI arguments of a tiny but complete ``advbench run`` on the tiny synthetic grid, plus ``extra``."""
    params = [f"--dataset-param=synthetic.{k}={v}" for k, v in TINY_SYNTHETIC.items()]
    return [
        "run",
        "--datasets",
        "synthetic",
        "--victims",
        TINY_VICTIMS,
        "--train-steps",
        "6",
        "--cache",
        str(cache),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
        "--detect-images",
        "8",
        *params,
        *extra,
    ]


@pytest.fixture
def tiny_run_args(session_cache: Path, tmp_path: Path) -> list[str]:
    """CLI arguments of a tiny but complete ``advbench run`` writing to a fresh folder."""
    return tiny_cli(session_cache, tmp_path / "lb")
