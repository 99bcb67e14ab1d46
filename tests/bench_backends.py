"""Benchmark: cells per second of the Ray backend against the local backend, on this machine's cores.

Not collected by the default run (the name does not match ``test_*.py``); run it by path::

    pytest tests/bench_backends.py --benchmark-only -s

The grid: the embedded dataset at 64x32 (100 queries, 500 gallery images), two victims (resnet10t,
mobilenetv3_small_100, trained for a few steps and cached before timing), FGSM, PGD-10, MI-FGSM and
feature-PGD at eps 4, 8, 16: 24 cells of 2 evaluations each. Both backends start from the same
cache (victims and clean features ready), write to fresh output folders and compute every cell;
the local backend uses every core in one process, Ray runs one single-threaded task per core
(``ray.init`` happens before the timing, as on a running cluster). ``ADVBENCH_BENCH_CELLS_CPUS``
sets the cores (default: all). Both runs must produce the same grid.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from advbench import leaderboard
from advbench.config import RunConfig
from advbench.plugins import get_registry
from advbench.runner import run

ray = pytest.importorskip("ray")
CPUS = int(os.environ.get("ADVBENCH_BENCH_CELLS_CPUS", os.cpu_count() or 1))
DATA = {
    "height": 64,
    "width": 32,
    "train_ids": 40,
    "train_images_per_id": 6,
    "test_ids": 50,
    "queries_per_id": 2,
    "gallery_per_id": 8,
    "distractor_ids": 20,
    "distractor_images": 5,
}


def _config(cache: Path, out: Path, **kw: object) -> RunConfig:
    base = dict(
        datasets="synthetic",
        victims="resnet10t,mobilenetv3_small_100",
        attacks="fgsm,pgd,mifgsm,feature-pgd",
        eps=(4.0, 8.0, 16.0),
        out=out,
        cache_dir=cache,
        data_root=None,
        device="cpu",
        train_steps=20,
        dataset_params={"synthetic": DATA},
        progress=False,
    )
    return RunConfig(**{**base, **kw})


def test_ray_vs_local_cells_per_second(tmp_path: Path, benchmark) -> None:
    registry = get_registry()
    cache = tmp_path / "cache"
    # victims and clean features into the cache first: the timed runs only compute cells
    run(_config(cache, tmp_path / "warm", attacks="fgsm", eps=(16.0,)), registry)
    torch.set_num_threads(CPUS)
    ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False)
    try:
        # one warm-up task per worker (imports, plugin discovery) is what a running cluster has paid already
        run(
            _config(cache, tmp_path / "ray-warm", attacks="fgsm", eps=(16.0,), backend="ray", threads=1),
            registry,
        )
        timings: dict[str, float] = {}
        frames = {}
        for name, cfg in {
            "local": _config(cache, tmp_path / "local", threads=CPUS),
            "ray": _config(cache, tmp_path / "ray", backend="ray", threads=1),
        }.items():
            start = time.perf_counter()
            summary = run(cfg, registry)
            timings[name] = time.perf_counter() - start
            assert summary.done == 24 and not summary.failed
            frames[name] = leaderboard.results_frame(summary.records).drop(
                columns=["sec_per_image", "device"]
            )
    finally:
        ray.shutdown()
    cells = {k: 24 / v for k, v in timings.items()}
    ratio = cells["ray"] / cells["local"]
    print(
        f"\n{CPUS} cores: local {cells['local']:.2f} cells/s ({timings['local']:.1f} s), "
        f"ray {cells['ray']:.2f} cells/s ({timings['ray']:.1f} s): ray / local = {ratio:.2f}"
    )
    benchmark.extra_info.update(cells_per_s=cells, ratio=ratio, cpus=CPUS)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    # threads differ (CPUS in one process vs 1 per task), so only the grid is compared here; equal
    # threads give equal numbers (below, and tests/test_ray_backend.py)
    assert frames["local"][["attack", "eps", "source_victim", "target_victim"]].equals(
        frames["ray"][["attack", "eps", "source_victim", "target_victim"]]
    )


def test_threads_give_identical_cells(tmp_path: Path) -> None:
    """Same threads, same arithmetic: the Ray run at 1 thread equals a local run at 1 thread exactly."""
    registry = get_registry()
    cache = tmp_path / "cache"
    one = _config(cache, tmp_path / "a", attacks="pgd", eps=(8.0,), threads=1)
    a = run(one, registry)
    ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False)
    try:
        b = run(dataclasses.replace(one, out=tmp_path / "b", backend="ray"), registry)
    finally:
        ray.shutdown()
    drop = ["sec_per_image", "device"]
    pd.testing.assert_frame_equal(
        leaderboard.results_frame(a.records).drop(columns=drop),
        leaderboard.results_frame(b.records).drop(columns=drop),
    )
