"""k-reciprocal re-ranking against a slow reference written from the paper's definitions, set by set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from advbench.api import AdvbenchError
from advbench.metrics.reid import evaluate
from advbench_defences import rerank
from advbench_defences.rerank import KReciprocalRerank, k_reciprocal_rerank


def reference_rerank(
    q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int, k2: int, lam: float
) -> tuple[np.ndarray, int]:
    """Zhong et al. (CVPR 2017) with Python sets and loops; also how many sets the expansion grew."""
    nq = len(q_q)
    raw = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64)
    n = len(raw)
    # toolkit convention: each column divided by its maximum, then transposed
    d = [[raw[g][p] / max(raw[x][p] for x in range(n)) for g in range(n)] for p in range(n)]
    order = [sorted(range(n), key=lambda g, p=p: (d[p][g], g)) for p in range(n)]

    def near(p: int, k: int) -> set[int]:
        return set(order[p][: k + 1])

    def reciprocal(p: int, k: int) -> set[int]:
        return {g for g in near(p, k) if p in near(g, k)}

    grown = 0
    vectors = []
    for p in range(n):
        base = reciprocal(p, k1)
        star = set(base)
        for q in base:
            half = reciprocal(q, round(k1 / 2))
            if len(half & base) > 2 * len(half) / 3:
                star |= half
        grown += star != base
        total = sum(math.exp(-d[p][g]) for g in star)
        vectors.append({g: math.exp(-d[p][g]) / total for g in star})
    expanded = []
    for p in range(n):
        mean: dict[int, float] = {}
        for g in order[p][:k2]:
            for j, w in vectors[g].items():
                mean[j] = mean.get(j, 0.0) + w / k2
        expanded.append(mean)
    out = np.zeros((nq, n - nq))
    for i in range(nq):
        for j in range(nq, n):
            a, b = expanded[i], expanded[j]
            keys = set(a) | set(b)
            low = sum(min(a.get(x, 0.0), b.get(x, 0.0)) for x in keys)
            high = sum(max(a.get(x, 0.0), b.get(x, 0.0)) for x in keys)
            out[i, j - nq] = (1 - lam) * (1 - low / high) + lam * d[i][j]
    return out, grown


def clustered(ids: int, per_id: int, dim: int, noise: float, seed: int) -> tuple[Tensor, Tensor]:
    """Features of ``ids`` identities, ``per_id`` noisy copies each, and their pids."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(ids, dim, generator=g, dtype=torch.float64)
    pids = torch.arange(ids).repeat_interleave(per_id)
    return centres[pids] + noise * torch.randn(len(pids), dim, generator=g, dtype=torch.float64), pids


def split_distances(feats: Tensor, nq: int) -> tuple[Tensor, Tensor, Tensor]:
    dist = torch.cdist(feats, feats)
    dist.fill_diagonal_(0.0)
    return dist[:nq, nq:], dist[:nq, :nq], dist[nq:, nq:]


@pytest.mark.parametrize(("nq", "ng", "k1", "k2", "lam"), [(6, 30, 7, 3, 0.3), (6, 60, 20, 6, 0.3)])
def test_matches_the_set_by_set_reference(nq: int, ng: int, k1: int, k2: int, lam: float) -> None:
    feats, _ = clustered(ids=9, per_id=(nq + ng) // 9 + 1, dim=8, noise=0.8, seed=k1)
    feats = feats[torch.randperm(len(feats), generator=torch.Generator().manual_seed(1))][: nq + ng]
    q_g, q_q, g_g = split_distances(feats, nq)
    expected, grown = reference_rerank(q_g.numpy(), q_q.numpy(), g_g.numpy(), k1, k2, lam)
    assert grown > 0  # the 2/3 expansion rule is exercised
    got = k_reciprocal_rerank(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    assert got.shape == (nq, ng) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)
    got32 = k_reciprocal_rerank(q_g.float(), q_q.float(), g_g.float(), k1=k1, k2=k2, lambda_value=lam)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), expected, rtol=0, atol=1e-5)


def test_chunked_and_dense_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny chunks exercise the blocked sort and Jaccard loops; the dense (CUDA) Jaccard path is the same."""
    feats, _ = clustered(ids=5, per_id=8, dim=6, noise=0.8, seed=4)
    q_g, q_q, g_g = split_distances(feats, 7)
    expected, _ = reference_rerank(q_g.numpy(), q_q.numpy(), g_g.numpy(), 7, 3, 0.3)
    monkeypatch.setattr(rerank, "SORT_CHUNK_ELEMENTS", 50)
    monkeypatch.setattr(rerank, "JACCARD_CHUNK_ELEMENTS", 9)
    got = k_reciprocal_rerank(q_g, q_q, g_g, k1=7, k2=3, lambda_value=0.3)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    v = torch.rand(30, 30, generator=g, dtype=torch.float64) * (torch.rand(30, 30, generator=g) < 0.2)
    v /= v.sum(dim=1, keepdim=True).clamp_min(1e-9)
    sparse, dense = rerank._jaccard(v, 8, sparse=True), rerank._jaccard(v, 8, sparse=False)
    direct = 1 - torch.minimum(v[:8, None], v[None]).sum(2) / torch.maximum(v[:8, None], v[None]).sum(2)
    torch.testing.assert_close(sparse, direct, rtol=0, atol=1e-12)
    torch.testing.assert_close(dense, direct, rtol=0, atol=1e-12)


def test_k2_of_one_skips_query_expansion() -> None:
    feats, _ = clustered(ids=5, per_id=6, dim=6, noise=0.7, seed=3)
    q_g, q_q, g_g = split_distances(feats, 5)
    expected, _ = reference_rerank(q_g.numpy(), q_q.numpy(), g_g.numpy(), 6, 1, 0.5)
    got = k_reciprocal_rerank(q_g, q_q, g_g, k1=6, k2=1, lambda_value=0.5)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)


def test_lambda_one_returns_the_normalised_original_distances() -> None:
    feats, _ = clustered(ids=4, per_id=5, dim=6, noise=0.5, seed=2)
    q_g, q_q, g_g = split_distances(feats, 4)
    got = k_reciprocal_rerank(q_g, q_q, g_g, k1=5, k2=3, lambda_value=1.0)
    row_max = torch.cat([q_q, q_g], dim=1).max(dim=1, keepdim=True).values
    torch.testing.assert_close(got, q_g / row_max, rtol=0, atol=1e-12)


def test_reranking_does_not_lower_map_on_clustered_features() -> None:
    feats, pids = clustered(ids=12, per_id=8, dim=16, noise=1.2, seed=7)
    query = torch.arange(len(pids)) % 8 == 0  # one query per identity, the rest is the gallery
    q, g = feats[query], feats[~query]
    q_pids, g_pids = pids[query], pids[~query]
    q_cams, g_cams = torch.zeros(len(q), dtype=torch.long), torch.ones(len(g), dtype=torch.long)
    q_g, q_q, g_g = torch.cdist(q, g), torch.cdist(q, q), torch.cdist(g, g)
    before = evaluate(q_g, q_pids, g_pids, q_cams, g_cams).mAP
    after = evaluate(KReciprocalRerank(k1=6, k2=3).rerank(q_g, q_q, g_g), q_pids, g_pids, q_cams, g_cams).mAP
    assert before < 0.99  # the toy problem is not already solved
    assert after >= before


def test_bad_inputs_are_one_line_errors() -> None:
    q_g, q_q, g_g = torch.rand(2, 5), torch.rand(2, 2), torch.rand(5, 5)
    with pytest.raises(AdvbenchError, match="q_g"):
        k_reciprocal_rerank(q_g, q_q, torch.rand(4, 4))
    with pytest.raises(AdvbenchError, match="k1"):
        k_reciprocal_rerank(q_g, q_q, g_g, k1=7)
    with pytest.raises(AdvbenchError, match="NaN"):
        k_reciprocal_rerank(q_g.fill_(float("nan")), q_q, g_g, k1=3, k2=2)
