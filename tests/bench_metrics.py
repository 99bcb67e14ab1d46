"""Benchmark of :func:`advbench.metrics.reid.evaluate_features`: time and peak memory.

Not collected by the default run (the name does not match ``test_*.py``); run it by path::

    .venv/bin/python -m pytest tests/bench_metrics.py --benchmark-only -s

``--benchmark-only`` overrides the ``--benchmark-skip`` of the project's addopts. The problem is
2,000 queries x 20,000 gallery items, 512-d features, on one CPU thread; override it with
``ADVBENCH_BENCH_SIZE=QxGxD`` (e.g. ``11659x82161x512`` for MSMT17; ``ADVBENCH_BENCH_NAIVE=0``
then skips the naive path, which would need tens of GB). Peak memory is measured in a fresh
subprocess per path, as the growth of the peak resident set (VmHWM) over the resident set
after the features were created, so one path's allocations do not hide the other's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from advbench.metrics.reid import ReidScores, distance_matrix, evaluate, evaluate_features

SIZE = tuple(int(x) for x in os.environ.get("ADVBENCH_BENCH_SIZE", "2000x20000x512").split("x"))
RUN_NAIVE = os.environ.get("ADVBENCH_BENCH_NAIVE", "1") != "0"


def make_problem(num_q: int, num_g: int, dim: int) -> tuple[torch.Tensor, ...]:
    """Float32 features clustered by identity, Market-like labels (6 cameras, some distractors)."""
    g = torch.Generator().manual_seed(0)
    num_ids = max(2, num_q // 4)
    q_pids = torch.randint(0, num_ids, (num_q,), generator=g)
    g_pids = torch.randint(0, num_ids + num_ids // 4, (num_g,), generator=g)
    g_pids[:num_ids] = torch.arange(num_ids)  # every id has at least one gallery image
    q_cams = torch.randint(0, 6, (num_q,), generator=g)
    g_cams = torch.randint(0, 6, (num_g,), generator=g)
    centres = torch.randn(num_ids + num_ids // 4, dim, generator=g)
    qf = centres[q_pids].add_(torch.randn(num_q, dim, generator=g), alpha=3.0)
    gf = centres[g_pids].add_(torch.randn(num_g, dim, generator=g), alpha=3.0)
    return qf, gf, q_pids, g_pids, q_cams, g_cams


def run_chunked(qf, gf, qp, gp, qc, gc) -> ReidScores:
    return evaluate_features(qf, gf, qp, gp, qc, gc, distance="cosine")


def run_naive(qf, gf, qp, gp, qc, gc) -> ReidScores:
    """The full distance matrix, then every query ranked at once (torchreid-style memory)."""
    dist = distance_matrix(qf, gf, "cosine")
    return evaluate(dist, qp, gp, qc, gc, chunk_size=dist.shape[0])


_CHILD = """
import json, sys, time, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
import bench_metrics as b
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
data = b.make_problem(*{size!r})
base = status('VmRSS:')
t = time.perf_counter()
s = getattr(b, {fn!r})(*data)
secs = time.perf_counter() - t
print(json.dumps(dict(peak=status('VmHWM:') - base, secs=secs, mAP=s.mAP, r1=s.rank(1))))
"""


def measure(fn: str) -> dict[str, float]:
    code = _CHILD.format(tests=os.path.dirname(__file__), size=SIZE, fn=fn)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def problem() -> tuple[torch.Tensor, ...]:
    return make_problem(*SIZE)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.benchmark(group="evaluate_features")
def test_bench_chunked(benchmark, problem) -> None:
    s = benchmark.pedantic(run_chunked, args=problem, rounds=2, iterations=1)
    assert 0.0 < s.mAP < 1.0


@pytest.mark.skipif(not RUN_NAIVE, reason="ADVBENCH_BENCH_NAIVE=0")
@pytest.mark.benchmark(group="evaluate_features")
def test_bench_naive_full_distmat(benchmark, problem) -> None:
    s = benchmark.pedantic(run_naive, args=problem, rounds=2, iterations=1)
    assert 0.0 < s.mAP < 1.0


@pytest.mark.benchmark(group="memory")
def test_peak_memory_side_by_side(benchmark) -> None:
    """Peak extra memory of both paths, each in its own process; both give the same scores."""
    rows = {"chunked": benchmark.pedantic(measure, args=("run_chunked",), rounds=1, iterations=1)}
    if RUN_NAIVE:
        rows["naive"] = measure("run_naive")
    q, g, d = SIZE
    print(f"\nevaluate_features, {q} x {g} x {d}-d, cosine, 1 thread")
    print(f"{'path':<8} {'peak extra MB':>14} {'seconds':>8} {'mAP':>8} {'rank-1':>8}")
    for name, r in rows.items():
        print(f"{name:<8} {r['peak'] / 2**20:>14.0f} {r['secs']:>8.2f} {r['mAP']:>8.4f} {r['r1']:>8.4f}")
        benchmark.extra_info[f"{name}_peak_mb"] = round(r["peak"] / 2**20, 1)
    if RUN_NAIVE:
        assert rows["chunked"]["mAP"] == pytest.approx(rows["naive"]["mAP"], abs=1e-9)
        assert rows["chunked"]["peak"] < rows["naive"]["peak"]
