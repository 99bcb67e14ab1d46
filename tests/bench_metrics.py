"""Benchmarks of :mod:`advbench.metrics.reid`: ratios to the bare sort, and peak memory.

Not collected by the default run (the name does not match ``test_*.py``); run it by path::

    .venv/bin/python -m pytest tests/bench_metrics.py --benchmark-only -s

``--benchmark-only`` overrides the ``--benchmark-skip`` of the project's addopts. Everything runs on
one CPU thread. Each timing test runs its paths side by side, interleaved round by round, keeps
each path's best round, prints the ratio and asserts it against its goal:

* :func:`evaluate` of a Market-1501-sized float32 distance matrix against a bare ``torch.argsort``
  of it (goal <= 1.5), and against a per-query Python loop of torchreid's ``eval_market1501``
  (scores identical to 1e-9);
* the runner's path (:func:`evaluate_queries` on a :class:`GalleryIndex`) against one float32
  matmul + a bare argsort (goal <= 1.2), at the size of ``ADVBENCH_BENCH_SIZE`` (``market``
  default, ``msmt17``, or ``QxG``) with ``ADVBENCH_BENCH_DIM``-d features (2048);
* the peak memory of that path beyond the features at MSMT17's gallery size, 2048-d (goal
  < 0.5 GB), in a fresh process: the growth of the peak resident set (VmHWM, reset once the
  features exist) over the resident set. The peak does not depend on the number of queries beyond
  one chunk, so by default 1,024 queries run; ``ADVBENCH_BENCH_MEMORY_QUERIES=11659`` runs all.

``ADVBENCH_BENCH_ROUNDS`` (default 2) sets the rounds of the timing tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, replace

import numpy as np
import pytest
import torch

from advbench.metrics.reid import (
    ReidScores,
    default_chunk_size,
    distance_matrix,
    evaluate,
    evaluate_queries,
    gallery_distances,
    prepare_gallery,
)


@dataclass(frozen=True)
class Shape:
    """Label structure of a re-ID test split: ids, cameras and pid-0 distractors in the gallery."""

    num_query: int
    num_gallery: int
    num_ids: int
    num_cams: int
    num_distractors: int


# Market-1501 as torchreid loads it (pid -1 junk dropped) and MSMT17 (no distractors).
MARKET = Shape(3368, 15913, 751, 6, 2798)
MSMT17 = Shape(11659, 82161, 3060, 15, 0)


def shape_from_env() -> Shape:
    size = os.environ.get("ADVBENCH_BENCH_SIZE", "market")
    if size in ("market", "msmt17"):
        return MARKET if size == "market" else MSMT17
    q, g = (int(x) for x in size.split("x"))
    return Shape(q, g, max(2, round(q / 4.5)), 6, round(0.176 * g))  # Market-like proportions


DIM = int(os.environ.get("ADVBENCH_BENCH_DIM", "2048"))
ROUNDS = int(os.environ.get("ADVBENCH_BENCH_ROUNDS", "2"))
MEMORY_QUERIES = int(os.environ.get("ADVBENCH_BENCH_MEMORY_QUERIES", "1024"))


def _counts(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    out = np.full(parts, total // parts)
    out[rng.choice(parts, total - int(out.sum()), replace=False)] += 1
    return out


def make_problem(shape: Shape, dim: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Float32 features clustered by identity, and labels shaped like ``shape``.

    Each identity is seen by 2-6 of the cameras; an image's 64-d latent is its identity's centre
    plus a camera offset plus noise (distractors: a random point), projected to ``dim`` and
    rectified, like the pooled features of a CNN. The noise gives Market a BoT-like score (mAP
    0.86, rank-1 0.95, mINP 0.62 at 256-d). Built in blocks: no full-size temporaries.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(1, shape.num_ids + 1)
    q_pids = np.repeat(ids, _counts(shape.num_query, shape.num_ids, rng))
    g_ids = np.repeat(ids, _counts(shape.num_gallery - shape.num_distractors, shape.num_ids, rng))
    g_pids = np.concatenate([g_ids, np.zeros(shape.num_distractors, dtype=np.int64)])
    id_cams = np.stack([rng.permutation(shape.num_cams) for _ in range(shape.num_ids + 1)])
    span = rng.integers(2, min(shape.num_cams, 6) + 1, shape.num_ids + 1)

    def cams(p: np.ndarray) -> np.ndarray:
        return id_cams[p, rng.integers(0, 1 << 30, len(p)) % span[p]]

    q_cams, g_cams = cams(q_pids), cams(g_pids)
    g_cams[g_pids == 0] = rng.integers(0, shape.num_cams, shape.num_distractors)
    gen = torch.Generator().manual_seed(seed)
    latent, sigma = 64, 0.55
    proj = torch.randn(latent, dim, generator=gen) / latent**0.5
    centres = torch.randn(shape.num_ids + 1, latent, generator=gen)
    cam_offsets = 0.5 * torch.randn(shape.num_cams, latent, generator=gen)

    def features(pids: np.ndarray, camids: np.ndarray) -> torch.Tensor:
        out = torch.empty(len(pids), dim)
        p, c = torch.from_numpy(pids), torch.from_numpy(camids)
        rows = max(1, 2**22 // dim)
        for s in range(0, len(pids), rows):
            pb = p[s : s + rows]
            z = (
                centres[pb]
                + cam_offsets[c[s : s + rows]]
                + sigma * torch.randn(len(pb), latent, generator=gen)
            )
            junk = pb == 0
            z[junk] = (1 + sigma**2) ** 0.5 * torch.randn(int(junk.sum()), latent, generator=gen)
            torch.mm(z, proj, out=out[s : s + rows]).relu_()
        return out

    labels = [torch.from_numpy(x) for x in (q_pids, g_pids, q_cams, g_cams)]
    return features(q_pids, q_cams), features(g_pids, g_cams), *labels


def market_loop(dist: np.ndarray, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50):
    """torchreid's ``eval_market1501`` (Zheng et al. 2015), one query at a time in NumPy.

    The only change: a stable argsort, so ties break by gallery index as in advbench.
    """
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind="stable")
        same = g_pids[order] == q_pids[i]
        keep = ~(same & (g_camids[order] == q_camids[i]))
        raw_cmc = same[keep].astype(np.int64)
        if not raw_cmc.any():
            continue
        cmc = raw_cmc.cumsum()
        last = np.flatnonzero(raw_cmc).max()
        all_inp.append(cmc[last] / (last + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        precision = raw_cmc.cumsum() / np.arange(1.0, len(raw_cmc) + 1.0)
        all_ap.append((precision * raw_cmc).sum() / raw_cmc.sum())
    return float(np.mean(all_ap)), np.mean(all_cmc, axis=0), float(np.mean(all_inp)), len(all_ap)


def side_by_side(benchmark, paths: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best seconds of each path over ``rounds`` rounds that run every path once, in turn.

    Interleaving keeps the ratio fair on a shared machine whose load drifts.
    """
    times: dict[str, list[float]] = {name: [] for name in paths}

    def one_round() -> None:
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)

    benchmark.pedantic(one_round, rounds=rounds, iterations=1)
    return {name: min(t) for name, t in times.items()}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------ evaluate(distmat)
@pytest.mark.benchmark(group="ranking")
def test_evaluate_vs_argsort_and_python_loop(benchmark) -> None:
    qf, gf, qp, gp, qc, gc = make_problem(MARKET, 256)
    dist = gallery_distances(qf, prepare_gallery(gf, gp, gc, "cosine"))
    scores: list[ReidScores] = []
    best = side_by_side(
        benchmark,
        {
            "evaluate": lambda: scores.append(evaluate(dist, qp, gp, qc, gc)),
            "argsort": lambda: torch.argsort(dist, dim=1),
        },
        ROUNDS,
    )
    arrays = [x.numpy() for x in (dist, qp, gp, qc, gc)]
    start = time.perf_counter()
    mAP, cmc, mINP, valid = market_loop(*arrays)
    loop = time.perf_counter() - start
    s = scores[0]
    ratio = best["evaluate"] / best["argsort"]
    print(
        f"\nevaluate(distmat), Market-1501 size {MARKET.num_query} x {MARKET.num_gallery} float32, 1 thread: "
        f"evaluate {best['evaluate']:.2f} s, torch.argsort {best['argsort']:.2f} s, ratio {ratio:.3f} "
        f"(goal <= 1.5); per-query Python loop {loop:.2f} s = {loop / best['evaluate']:.2f}x evaluate; "
        f"mAP {s.mAP:.4f} rank-1 {s.rank(1):.4f} mINP {s.mINP:.4f}"
    )
    benchmark.extra_info.update(ratio_to_argsort=round(ratio, 3), python_loop_s=round(loop, 2))
    assert s.num_valid_queries == valid
    assert s.mAP == pytest.approx(mAP, abs=1e-9) and s.mINP == pytest.approx(mINP, abs=1e-9)
    np.testing.assert_allclose(s.cmc, cmc, atol=1e-9)
    assert ratio <= 1.5


# ------------------------------------------------------------------- the runner's feature path
def baseline(qf: torch.Tensor, gf: torch.Tensor, rows: int) -> None:
    """The floor: one float32 matmul of (normalised) features and a bare argsort, ``rows`` at a time."""
    for s in range(0, qf.shape[0], rows):
        torch.argsort(torch.mm(qf[s : s + rows], gf.T), dim=1, descending=True)


@pytest.mark.benchmark(group="features")
def test_runner_path_vs_matmul_argsort(benchmark) -> None:
    shape = shape_from_env()
    qf, gf, qp, gp, qc, gc = make_problem(shape, DIM)
    start = time.perf_counter()
    index = prepare_gallery(gf, gp, gc, "cosine")
    prepare = time.perf_counter() - start
    qn, gn = torch.nn.functional.normalize(qf, dim=1), torch.nn.functional.normalize(gf, dim=1)
    # the whole matrix at once when it and its indices fit in 2 GB, else the path's own chunks
    whole = shape.num_query * shape.num_gallery * 12 <= 2**31
    rows = shape.num_query if whole else default_chunk_size(shape.num_gallery)
    scores: list[ReidScores] = []
    best = side_by_side(
        benchmark,
        {
            "path": lambda: scores.append(evaluate_queries(qf, index, qp, qc)),
            "matmul+argsort": lambda: baseline(qn, gn, rows),
        },
        ROUNDS,
    )
    ratio = best["path"] / best["matmul+argsort"]
    print(
        f"\nevaluate_queries, {shape.num_query} x {shape.num_gallery} x {DIM}-d, cosine, 1 thread: "
        f"path {best['path']:.2f} s (prepare_gallery {prepare:.2f} s, once), matmul + argsort "
        f"{best['matmul+argsort']:.2f} s ({'whole matrix' if whole else f'{rows} rows at a time'}), "
        f"ratio {ratio:.3f} (goal <= 1.2); mAP {scores[0].mAP:.4f} rank-1 {scores[0].rank(1):.4f}"
    )
    benchmark.extra_info.update(ratio_to_matmul_argsort=round(ratio, 3), prepare_s=round(prepare, 2))
    if whole:  # how much float32 distances move the scores against a float64 reference
        ref = evaluate(distance_matrix(qf, gf, "cosine"), qp, gp, qc, gc)
        s = scores[0]
        print(
            f"float64 distances: mAP {ref.mAP:.6f} rank-1 {ref.rank(1):.6f} mINP {ref.mINP:.6f}; "
            f"float32 - float64: mAP {s.mAP - ref.mAP:+.2e} rank-1 {s.rank(1) - ref.rank(1):+.2e} "
            f"mINP {s.mINP - ref.mINP:+.2e}"
        )
    assert ratio <= 1.2


# ------------------------------------------------------------------------------ peak memory
_CHILD = """
import json, sys, time, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
import bench_metrics as b
from advbench.metrics.reid import evaluate_queries, prepare_gallery
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
tiny = b.make_problem(b.Shape(8, 64, 4, 2, 4), 16)  # load the kernels before measuring
evaluate_queries(tiny[0], prepare_gallery(*tiny[1::2], 'cosine'), tiny[2], tiny[4])
qf, gf, qp, gp, qc, gc = b.make_problem(b.Shape(*{shape!r}), {dim!r})
open('/proc/self/clear_refs', 'w').write('5')  # reset VmHWM: building the features peaked higher
base = status('VmRSS:')
t = time.perf_counter()
s = evaluate_queries(qf, prepare_gallery(gf, gp, gc, 'cosine'), qp, qc)
secs = time.perf_counter() - t
print(json.dumps(dict(peak=status('VmHWM:') - base, secs=secs, mAP=s.mAP, inputs=(qf.nbytes + gf.nbytes))))
"""


@pytest.mark.benchmark(group="memory")
def test_peak_memory_msmt17(benchmark) -> None:
    """Peak extra memory of prepare_gallery + evaluate_queries at MSMT17's gallery size, 2048-d."""
    shape = replace(MSMT17, num_query=min(MEMORY_QUERIES, MSMT17.num_query))
    code = _CHILD.format(tests=os.path.dirname(__file__), shape=astuple(shape), dim=2048)

    def child() -> dict[str, float]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    r = benchmark.pedantic(child, rounds=1, iterations=1)
    print(
        f"\nprepare_gallery + evaluate_queries, {shape.num_query} x {shape.num_gallery} x 2048-d, cosine, "
        f"1 thread: peak {r['peak'] / 2**20:.0f} MB beyond the features ({r['inputs'] / 2**20:.0f} MB), "
        f"{r['secs']:.1f} s, mAP {r['mAP']:.4f} (goal < 512 MB)"
    )
    benchmark.extra_info["peak_mb"] = round(r["peak"] / 2**20, 1)
    assert r["peak"] < 0.5 * 2**30


# ------------------------------------------------------------------- torchreid's evaluator
@pytest.mark.benchmark(group="torchreid")
def test_evaluate_vs_torchreid_python_evaluator(benchmark) -> None:
    """:func:`evaluate` against torchreid's ``evaluate_rank`` (its Python path: the PyPI package has no
    Cython build) on one Market-1501-sized float32 squared-euclidean matrix (torchreid's default
    metric), side by side; skipped without the ``[torchreid]`` extra."""
    pytest.importorskip("torchreid", reason="the torchreid extra is not installed")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchreid.reid.metrics import evaluate_rank

    qf, gf, qp, gp, qc, gc = make_problem(MARKET, 256)
    dist = gallery_distances(qf, prepare_gallery(gf, gp, gc, "euclidean"))
    arrays = [x.numpy() for x in (dist, qp, gp, qc, gc)]
    ours: list[ReidScores] = []
    theirs: list[tuple[np.ndarray, float]] = []
    best = side_by_side(
        benchmark,
        {
            "advbench": lambda: ours.append(evaluate(dist, qp, gp, qc, gc)),
            "torchreid": lambda: theirs.append(evaluate_rank(*arrays, max_rank=50, use_cython=False)),
        },
        ROUNDS,
    )
    s, (cmc, mAP) = ours[0], theirs[0]
    ratio = best["torchreid"] / best["advbench"]
    d_map, d_cmc = abs(s.mAP - float(mAP)), float(np.abs(np.asarray(s.cmc) - cmc).max())
    print(
        f"\nMarket-1501 size {MARKET.num_query} x {MARKET.num_gallery} float32 euclidean, 1 thread: "
        f"advbench evaluate {best['advbench']:.2f} s, torchreid evaluate_rank (python) "
        f"{best['torchreid']:.2f} s = {ratio:.1f}x; mAP {s.mAP:.4f} rank-1 {s.rank(1):.4f}; "
        f"|advbench - torchreid|: mAP {d_map:.1e}, CMC {d_cmc:.1e} (torchreid's argsort is not stable)"
    )
    benchmark.extra_info.update(torchreid_s=round(best["torchreid"], 2), speedup=round(ratio, 1))
    assert d_map < 1e-4 and d_cmc < 1e-4
