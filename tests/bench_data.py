"""Benchmark of the decode cache: cold decoding speed against a plain PIL loop, and peak memory.

Not collected by the default run (the name does not match ``test_*.py``); run it by path::

    .venv/bin/python -m pytest tests/bench_data.py --benchmark-only -s

Files: the embedded synthetic dataset at its default size (3,500 PNGs at 128x64, decoded as they are)
and the same images re-encoded as JPEG and decoded to 256x128 (BILINEAR), as for Market-1501.

``test_decode_ratio`` times :func:`load_split` decoding a split into a fresh cache (including the
write, fsync and rename) against a plain loop over the same files (open, convert RGB, resize,
``np.array``), side by side, best of 5 interleaved rounds after a warm-up that also fills the page
cache; it prints the ratio and checks the goal of at most 1.1. The CPU-time ratios and the figures
with one decode thread are printed for information, with the load average (other
processes on the machine move every wall-clock figure here).

``test_peak_memory`` decodes then reads a large split (``ADVBENCH_BENCH_IMAGES=NxHxW``, default
``20000x128x64``, the synthetic PNGs repeated) in batches of 256, once in order and once at random
with replacement, in a fresh subprocess per backing, and prints the growth of the peak resident set
(VmHWM, what ``/usr/bin/time -v`` reports as maximum resident set size) next to the size of the
decoded array: the disk-backed split stays within a few batches whatever the split's size, while
the in-memory tensor needs all of it (``ADVBENCH_BENCH_IN_MEMORY=0`` skips that one, e.g. for
``82161x256x128``, MSMT17's gallery, 8 GB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from advbench.api import Sample
from advbench.data.images import default_workers, load_split
from advbench_datasets import synthetic

_MEM = [int(x) for x in os.environ.get("ADVBENCH_BENCH_IMAGES", "20000x128x64").split("x")]
NUM_IMAGES, MEM_SIZE = _MEM[0], (_MEM[1], _MEM[2])
IN_MEMORY = os.environ.get("ADVBENCH_BENCH_IN_MEMORY", "1") != "0"
BATCH = 256
GOAL = 1.1
ROUNDS = 5
CORES = len(os.sched_getaffinity(0))


def _load() -> str:
    """The 1-minute load average: other processes on the machine move these figures."""
    return f"{os.getloadavg()[0]:.1f} on {CORES} cores"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Synthetic PNGs (128x64) and JPEG copies of them."""
    root = tmp_path_factory.mktemp("bench-data")
    data = synthetic.load(None, root / "cache")
    pngs = [s.path for s in (*data.train, *data.query, *data.gallery)]
    jpegs = []
    (root / "jpeg").mkdir()
    for i, path in enumerate(pngs):
        jpeg = root / "jpeg" / f"{i:05d}.jpg"
        with Image.open(path) as img:
            img.convert("RGB").save(jpeg, quality=90)
        jpegs.append(str(jpeg))
    return {"png": pngs, "jpeg": jpegs}


CASES = {"png": ("png", (128, 64)), "jpeg-256x128": ("jpeg", (256, 128))}


Timing = tuple[float, float]  # (wall seconds, CPU seconds of this process, all threads)


def _timed(fn: Callable[[], object]) -> Timing:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def plain_loop(paths: list[str], size: tuple[int, int]) -> Timing:
    """The floor: PIL decode, convert and resize of every file, one thread, nothing kept."""

    def loop() -> None:
        for path in paths:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if img.size != (size[1], size[0]):
                    img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                np.array(img, dtype=np.uint8)

    return _timed(loop)


def cold_load(paths: list[str], size: tuple[int, int], workers: int | None = None) -> Timing:
    """:func:`load_split` with an empty cache: decode, write the ``.npy``, fsync, rename.

    Only the call is timed: making and deleting the cache folder is the benchmark's business.
    """
    samples = [Sample(p, i % 100, i % 6) for i, p in enumerate(paths)]
    with tempfile.TemporaryDirectory(dir=Path(paths[0]).parent.parent) as cache:
        timing = _timed(
            lambda: load_split(samples, size, cache_dir=Path(cache), progress=False, workers=workers)
        )
        assert len(list(Path(cache, "images").glob("*.npy"))) == 1
    return timing


@pytest.mark.parametrize("case", list(CASES))
def test_decode_ratio(benchmark: Any, files: dict[str, list[str]], case: str) -> None:
    """Cold ``load_split`` / plain loop, best of 5 interleaved rounds; the goal is <= 1.1.

    The best round of each path is the estimate least moved by other processes (the machine this
    was written on is shared, and single rounds varied by up to 2x). The CPU-time ratio, printed
    too, counts every thread: above the wall ratio when two threads decode.
    """
    kind, size = CASES[case]
    paths = files[kind]
    runs: dict[str, Callable[[], Timing]] = {
        "plain": lambda: plain_loop(paths, size),
        "load_split": lambda: cold_load(paths, size),
        "load_split_1_thread": lambda: cold_load(paths, size, workers=1),
    }
    times: dict[str, list[Timing]] = {name: [] for name in runs}
    for fn in runs.values():  # warm-up: page cache, imports, thread pools
        fn()
    for _ in range(ROUNDS):
        for name, fn in runs.items():
            times[name].append(fn())
    wall = {name: min(t[0] for t in ts) for name, ts in times.items()}
    cpu = {name: min(t[1] for t in ts) for name, ts in times.items()}
    ratio = {name: wall[name] / wall["plain"] for name in runs}
    cpu_ratio = {name: cpu[name] / cpu["plain"] for name in runs}
    benchmark.extra_info.update(images=len(paths), size=list(size), workers=default_workers(), load=_load())
    for name in runs:
        benchmark.extra_info.update(
            {f"{name}_s": wall[name], f"{name}_ratio": ratio[name], f"{name}_cpu_ratio": cpu_ratio[name]}
        )
    benchmark.pedantic(lambda: None, rounds=1)  # keeps the figures in the benchmark report
    print(f"\n{case}: {len(paths)} files -> {size[0]}x{size[1]}, best of {ROUNDS}, load {_load()}")
    for name in runs:
        threads = f" ({default_workers()} decode thread(s))" if name == "load_split" else ""
        print(
            f"  {name:<22} {wall[name]:6.2f} s  ratio {ratio[name]:.2f}  "
            f"cpu {cpu[name]:6.2f} s  cpu ratio {cpu_ratio[name]:.2f}{threads}"
        )
    assert ratio["load_split"] <= GOAL


_CHILD = """
import json, sys, time
import torch
from advbench.api import Sample
from advbench.data.images import load_split
torch.set_num_threads(1)
paths, n, size, cache, batch = json.load(sys.stdin)
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
samples = [Sample(paths[i % len(paths)], i % 500, i % 6) for i in range(n)]
base = status('VmRSS:')
t = time.perf_counter()
split = load_split(samples, tuple(size), cache_dir=cache, progress=False)
decode_s, decode_peak = time.perf_counter() - t, status('VmHWM:') - base
t, total = time.perf_counter(), 0.0
for start in range(0, n, batch):  # feature extraction: every image once, in order
    total += float(split.batch(slice(start, start + batch)).mean())
g = torch.Generator().manual_seed(0)
for _ in range(n // batch):  # training: random batches, drawn with replacement
    total += float(split.batch(torch.randint(0, n, (batch,), generator=g)).mean())
read_s = time.perf_counter() - t
print(json.dumps(dict(decode_s=decode_s, decode_peak=decode_peak, read_s=read_s,
                      peak=status('VmHWM:') - base, check=total)))
"""


def measure(paths: list[str], cache: str | None) -> dict[str, float]:
    arg = json.dumps([paths, NUM_IMAGES, list(MEM_SIZE), cache, BATCH])
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], input=arg, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_peak_memory(benchmark: Any, files: dict[str, list[str]], tmp_path: Path) -> None:
    """Peak extra resident memory of decoding + batch reads, disk-backed vs in memory."""
    array_bytes = NUM_IMAGES * 3 * MEM_SIZE[0] * MEM_SIZE[1]
    batch_bytes = BATCH * 3 * MEM_SIZE[0] * MEM_SIZE[1] * 4  # one float32 batch
    rows = {"disk": benchmark.pedantic(measure, args=(files["png"], str(tmp_path)), rounds=1)}
    if IN_MEMORY:
        rows["memory"] = measure(files["png"], None)
        assert rows["disk"]["check"] == pytest.approx(rows["memory"]["check"], rel=1e-9)  # same pixels
    print(
        f"\n{NUM_IMAGES} images at {MEM_SIZE[0]}x{MEM_SIZE[1]}: decoded array {array_bytes / 2**20:.0f} MB,"
        f" one float batch of {BATCH} {batch_bytes / 2**20:.0f} MB; peak = growth of VmHWM"
    )
    print(f"{'backing':<8} {'decode s':>9} {'read s':>7} {'peak MB (decode)':>17} {'peak MB (all)':>14}")
    for name, r in rows.items():
        print(
            f"{name:<8} {r['decode_s']:>9.1f} {r['read_s']:>7.1f} "
            f"{r['decode_peak'] / 2**20:>17.0f} {r['peak'] / 2**20:>14.0f}"
        )
        benchmark.extra_info[f"{name}_peak_mb"] = round(r["peak"] / 2**20, 1)
    benchmark.extra_info["array_mb"] = round(array_bytes / 2**20, 1)
    if IN_MEMORY:
        assert rows["memory"]["peak"] > 0.9 * array_bytes  # the measure sees a whole-split tensor
    # Bounded by the batch: a few batches' worth (uint8 rows, their float copy, allocator slack).
    assert rows["disk"]["peak"] < 8 * batch_bytes
