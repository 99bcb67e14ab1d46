"""Benchmark: generating the embedded dataset at its default size (3,500 PNGs at 128x64).

Not collected by the default run; run it by path::

    pytest tests/bench_synthetic.py --benchmark-only -s
"""

from __future__ import annotations

import shutil
from pathlib import Path

from advbench_datasets import synthetic


def test_default_size_generation(tmp_path: Path, benchmark) -> None:
    def generate() -> int:
        shutil.rmtree(tmp_path / "synthetic", ignore_errors=True)
        ds = synthetic.load(None, tmp_path)
        return sum(len(x) for x in (ds.train, ds.query, ds.gallery))

    images = benchmark.pedantic(generate, rounds=1, iterations=1)
    seconds = benchmark.stats.stats.mean
    print(
        f"\ndefault synthetic dataset: {images} images in {seconds:.1f} s ({images / seconds:.0f} images/s)"
    )
