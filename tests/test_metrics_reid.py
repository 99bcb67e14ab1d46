"""advbench.metrics.reid against a plain per-query reference and hand-computed cases."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from advbench.api import AdvbenchError
from advbench.metrics.reid import (
    GalleryIndex,
    ReidScores,
    distance_matrix,
    evaluate,
    evaluate_cuhk03_classic,
    evaluate_features,
    evaluate_queries,
    gallery_distances,
    prepare_gallery,
    top_matches,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """The CPU is shared: two threads on a loaded machine made small convolutions 30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------- independent reference
def reference_market(dist, q_pids, g_pids, q_cams, g_cams, max_rank):
    """Textbook Market-1501 evaluation, one query at a time (numpy, no vectorisation)."""
    aps, inps, cmcs = [], [], []
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind="stable")
        ranked = []  # True/False for each kept gallery item, in ranked order
        for j in order:
            if g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i]:
                continue  # junk
            ranked.append(g_pids[j] == q_pids[i])
        if not any(ranked):
            continue
        hits, precisions, first, last = 0, [], None, None
        for pos, is_match in enumerate(ranked, start=1):
            if is_match:
                hits += 1
                precisions.append(hits / pos)
                first = pos if first is None else first
                last = pos
        aps.append(sum(precisions) / hits)
        inps.append(hits / last)
        cmcs.append([1.0 if first <= k else 0.0 for k in range(1, max_rank + 1)])
    return float(np.mean(aps)), np.mean(cmcs, axis=0), float(np.mean(inps)), len(aps)


def reference_features(qf, gf, distance):
    qf, gf = qf.astype(np.float64), gf.astype(np.float64)
    if distance == "cosine":
        qn = qf / np.linalg.norm(qf, axis=1, keepdims=True)
        gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
        return 1.0 - qn @ gn.T
    return ((qf[:, None, :] - gf[None, :, :]) ** 2).sum(-1)


def random_problem(seed: int, num_q: int = 40, num_g: int = 150, ties: bool = False):
    """Random re-ID labels with junk, distractors and queries that have no true match."""
    rng = np.random.default_rng(seed)
    num_ids, num_cams = 12, 3
    q_pids = rng.integers(0, num_ids, num_q)
    q_cams = rng.integers(0, num_cams, num_q)
    # gallery: test ids plus distractor ids (100..104) that no query has
    g_pids = np.concatenate([rng.integers(0, num_ids, num_g - 20), rng.integers(100, 105, 20)])
    g_cams = rng.integers(0, num_cams, num_g)
    # id 11 only appears in the gallery on camera 0, so its camera-0 queries have only junk;
    # id 10 never appears in the gallery at all.
    g_cams[g_pids == 11] = 0
    g_pids[g_pids == 10] = 9
    q_pids[:3] = 11
    q_cams[:3] = 0
    q_pids[3] = 10
    dist = rng.random((num_q, num_g))
    if ties:
        dist = np.round(dist * 8) / 8  # many exact ties: the stable order decides
    return dist, q_pids, g_pids, q_cams, g_cams


def assert_matches_reference(scores: ReidScores, ref, max_rank: int) -> None:
    mAP, cmc, mINP, n = ref
    assert scores.num_valid_queries == n
    assert len(scores.cmc) == max_rank
    assert scores.mAP == pytest.approx(mAP, abs=1e-6)
    assert scores.mINP == pytest.approx(mINP, abs=1e-6)
    np.testing.assert_allclose(scores.cmc, cmc, atol=1e-6)


# --------------------------------------------------------------------------------- evaluate
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("chunk_size", [None, 1, 7, 1000])
def test_evaluate_matches_reference(seed: int, ties: bool, chunk_size: int | None) -> None:
    dist, qp, gp, qc, gc = random_problem(seed, ties=ties)
    ref = reference_market(dist, qp, gp, qc, gc, max_rank=20)
    assert ref[3] < len(qp)  # the problem really has queries without a match
    scores = evaluate(dist, qp, gp, qc, gc, max_rank=20, chunk_size=chunk_size)
    assert_matches_reference(scores, ref, 20)


@pytest.mark.parametrize("chunk_size", [None, 7])
def test_per_query_ap_matches_reference_one_query_at_a_time(chunk_size: int | None) -> None:
    dist, qp, gp, qc, gc = random_problem(3, ties=True)
    scores = evaluate(dist, qp, gp, qc, gc, chunk_size=chunk_size)
    assert scores.query_ap is not None and scores.query_ap.shape == (len(qp),)
    for i in range(len(qp)):
        ref = reference_market(dist[i : i + 1], qp[i : i + 1], gp, qc[i : i + 1], gc, max_rank=5)
        if ref[3] == 0:
            assert np.isnan(scores.query_ap[i])
        else:
            assert scores.query_ap[i] == pytest.approx(ref[0], abs=1e-12)
    assert np.nanmean(scores.query_ap) == pytest.approx(scores.mAP, abs=1e-12)


def test_top_matches_follow_the_ranking_without_junk() -> None:
    _, qp, gp, qc, gc = random_problem(4)
    qf, gf = unit_features(qp, gp, seed=4)
    index = prepare_gallery(gf, gp, gc, "euclidean")
    order, match = top_matches(qf, index, qp, qc, k=5)
    dist = reference_features(np.asarray(qf), np.asarray(gf), "euclidean")
    for i in range(len(qp)):
        kept = [j for j in np.argsort(dist[i], kind="stable") if not (gp[j] == qp[i] and gc[j] == qc[i])]
        assert order[i].tolist() == kept[:5]
        assert match[i].tolist() == [bool(gp[j] == qp[i]) for j in kept[:5]]


def test_evaluate_accepts_torch_float32_and_numpy_alike() -> None:
    dist, qp, gp, qc, gc = random_problem(3)
    a = evaluate(dist.astype(np.float32), qp, gp, qc, gc, max_rank=10)
    b = evaluate(
        torch.from_numpy(dist).float(),
        torch.from_numpy(qp),
        torch.from_numpy(gp),
        torch.from_numpy(qc),
        torch.from_numpy(gc),
        max_rank=10,
    )
    assert a == b
    assert_matches_reference(a, reference_market(dist.astype(np.float32), qp, gp, qc, gc, 10), 10)


def test_single_query_by_hand() -> None:
    # Query pid 1 camera 0. Gallery ranked by distance: [junk, other, match, other, match, junk-free other].
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
    g_pids = np.array([1, 2, 1, 3, 1, 2])
    g_cams = np.array([0, 1, 1, 0, 2, 1])
    s = evaluate(dist, [1], g_pids, [0], g_cams, max_rank=5)
    # after removing the junk: [other, match, other, match, other] -> matches at ranks 2 and 4
    assert s.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert s.mINP == pytest.approx(2 / 4)
    assert s.cmc == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert s.rank(1) == 0.0 and s.rank(2) == 1.0
    assert s.num_valid_queries == 1


def test_two_queries_average_and_skip() -> None:
    dist = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1], [0.5, 0.5, 0.5]])
    g_pids = np.array([5, 6, 7])
    g_cams = np.array([1, 1, 1])
    # q0 (pid 5) matches at rank 1; q1 (pid 5) at rank 3; q2 (pid 8) has no match: skipped.
    s = evaluate(dist, [5, 5, 8], g_pids, [0, 0, 0], g_cams, max_rank=3)
    assert s.num_valid_queries == 2
    assert s.mAP == pytest.approx((1 + 1 / 3) / 2)
    assert s.mINP == pytest.approx((1 + 1 / 3) / 2)
    assert s.cmc == pytest.approx([0.5, 0.5, 1.0])


def test_ties_broken_by_gallery_index() -> None:
    # all distances equal: stable ranking keeps gallery order, so the match at index 2 is rank 3
    s = evaluate(np.zeros((1, 4)), [1], [0, 2, 1, 3], [0], [1, 1, 1, 1], max_rank=4)
    assert s.cmc == [0.0, 0.0, 1.0, 1.0]
    assert s.mAP == pytest.approx(1 / 3)


def test_cmc_saturates_beyond_gallery() -> None:
    s = evaluate(np.array([[0.2, 0.1]]), [1], [1, 2], [0], [1, 1], max_rank=5)
    assert s.cmc == [0.0, 1.0, 1.0, 1.0, 1.0]


def test_no_valid_query_raises() -> None:
    with pytest.raises(AdvbenchError, match="no query has a true match"):
        # the only same-id gallery item is on the query's camera: junk
        evaluate(np.array([[0.1, 0.2]]), [1], [1, 2], [0], [0, 0])


def test_bad_inputs_raise() -> None:
    with pytest.raises(AdvbenchError, match="NaN or Inf"):
        evaluate(np.array([[0.1, np.nan], [0.1, 0.2]]), [1, 2], [1, 2], [0, 0], [1, 1])
    with pytest.raises(AdvbenchError, match="g_pids must be 1-D with 2 entries"):
        evaluate(np.zeros((1, 2)), [1], [1, 2, 3], [0], [1, 1])
    with pytest.raises(AdvbenchError, match="rank-11"):
        evaluate(np.array([[0.1]]), [1], [1], [0], [1], max_rank=10).rank(11)


# ------------------------------------------------------------------------- evaluate_features
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("chunk_size", [None, 3, 64])
def test_evaluate_features_matches_reference(distance: str, chunk_size: int | None) -> None:
    _, qp, gp, qc, gc = random_problem(5)
    rng = np.random.default_rng(5)
    # features cluster by identity so the scores are far from chance and far from perfect
    centres = rng.normal(size=(200, 16))
    qf = centres[qp] + 1.2 * rng.normal(size=(len(qp), 16))
    gf = centres[gp] + 1.2 * rng.normal(size=(len(gp), 16))
    ref = reference_market(reference_features(qf, gf, distance), qp, gp, qc, gc, max_rank=15)
    assert 0.2 < ref[0] < 0.95
    s = evaluate_features(qf, gf, qp, gp, qc, gc, distance=distance, max_rank=15, chunk_size=chunk_size)
    assert_matches_reference(s, ref, 15)
    # same answer through the explicit distance matrix, from torch features
    d = distance_matrix(torch.from_numpy(qf), torch.from_numpy(gf), distance)
    np.testing.assert_allclose(d.numpy(), reference_features(qf, gf, distance), atol=1e-9)
    assert_matches_reference(evaluate(d, qp, gp, qc, gc, max_rank=15), ref, 15)


def test_evaluate_features_rejects_nan_rows() -> None:
    qf = np.ones((4, 8))
    qf[1, 3] = np.nan
    qf[2, 0] = np.inf
    with pytest.raises(AdvbenchError, match=r"query features: 2 of 4 feature rows contain NaN or Inf"):
        evaluate_features(qf, np.ones((3, 8)), [0, 1, 2, 3], [0, 1, 2], [0] * 4, [1] * 3)


def test_evaluate_features_rejects_unknown_distance_and_dims() -> None:
    with pytest.raises(AdvbenchError, match="unknown distance"):
        evaluate_features(np.ones((1, 4)), np.ones((1, 4)), [0], [0], [0], [1], distance="manhattan")  # type: ignore[arg-type]
    with pytest.raises(AdvbenchError, match="feature dimensions differ"):
        evaluate_features(np.ones((1, 4)), np.ones((1, 5)), [0], [0], [0], [1])


# -------------------------------------------------------------------------- CUHK03 classic
def expected_single_shot_cmc(dist, q_pids, g_pids, q_cams, g_cams, max_rank):
    """Exact expectation of the single-shot CMC: for a drawn true match m, each other identity's
    draw precedes m independently with probability (#its images ranked before m) / (#its images)."""
    cmcs = []
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind="stable")
        pos = np.empty_like(order)
        pos[order] = np.arange(len(order))
        keep = ~((g_pids == q_pids[i]) & (g_cams == q_cams[i]))
        matches = np.flatnonzero(keep & (g_pids == q_pids[i]))
        if len(matches) == 0:
            continue
        cmc = np.zeros(max_rank)
        for m in matches:
            dist_count = np.array([1.0])  # distribution of the number of draws before m
            for pid in np.unique(g_pids[g_pids != q_pids[i]]):
                items = np.flatnonzero(g_pids == pid)
                p = np.mean(pos[items] < pos[m])
                dist_count = np.concatenate([dist_count * (1 - p), [0.0]]) + np.concatenate(
                    [[0.0], dist_count * p]
                )
            below = np.cumsum(dist_count)  # P(#before <= r)
            cmc += np.array([below[min(k - 1, len(below) - 1)] for k in range(1, max_rank + 1)])
        cmcs.append(cmc / len(matches))
    return np.mean(cmcs, axis=0)


def test_cuhk03_perfect_ranking() -> None:
    # 4 ids x 3 gallery images on camera 1; queries on camera 0; own-id images are closest
    g_pids = np.repeat(np.arange(4), 3)
    q_pids = np.arange(4)
    dist = (q_pids[:, None] != g_pids[None, :]).astype(float) + 0.01 * np.arange(12)[None, :]
    s = evaluate_cuhk03_classic(dist, q_pids, g_pids, np.zeros(4, int), np.ones(12, int), max_rank=4)
    assert s.cmc == [1.0, 1.0, 1.0, 1.0]
    assert s.mAP == pytest.approx(1.0) and s.mINP == pytest.approx(1.0)


def test_cuhk03_deterministic_cases() -> None:
    # ranked gallery: A, A, match, B -> the drawn A always precedes the match: rank 2 every time
    g_pids = np.array([7, 7, 1, 8])
    g_cams = np.array([1, 1, 1, 1])
    dist = np.array([[0.1, 0.2, 0.3, 0.4]])
    s = evaluate_cuhk03_classic(dist, [1], g_pids, [0], g_cams, max_rank=3, repeats=5)
    assert s.cmc == [0.0, 1.0, 1.0]
    # the full-list mAP is unchanged by the sampling (torchreid semantics)
    assert s.mAP == pytest.approx(1 / 3)
    assert s.mAP == evaluate(dist, [1], g_pids, [0], g_cams, max_rank=3).mAP


def test_cuhk03_matches_exact_expectation_and_is_reproducible() -> None:
    dist, qp, gp, qc, gc = random_problem(11, num_q=25, num_g=60)
    exp = expected_single_shot_cmc(dist, qp, gp, qc, gc, max_rank=10)
    a = evaluate_cuhk03_classic(dist, qp, gp, qc, gc, max_rank=10, repeats=300, seed=3)
    # 25 queries x 300 draws: standard error below 0.006
    np.testing.assert_allclose(a.cmc, exp, atol=0.03)
    b = evaluate_cuhk03_classic(dist, qp, gp, qc, gc, max_rank=10, repeats=300, seed=3, chunk_size=4)
    assert a.cmc == pytest.approx(b.cmc, abs=1e-12)
    c = evaluate_cuhk03_classic(dist, qp, gp, qc, gc, max_rank=10, repeats=300, seed=4)
    assert c.cmc != a.cmc
    assert math.isclose(a.mAP, evaluate(dist, qp, gp, qc, gc).mAP)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_evaluate_features_leaves_inputs_untouched(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    qf = torch.randn(6, 8, generator=g, dtype=dtype)
    gf = torch.randn(20, 8, generator=g, dtype=dtype)
    qf0, gf0 = qf.clone(), gf.clone()
    pids = torch.arange(20) % 6
    s = evaluate_features(
        qf, gf, pids[:6], pids, torch.zeros(6, dtype=torch.long), torch.ones(20, dtype=torch.long)
    )
    assert torch.equal(qf, qf0) and torch.equal(gf, gf0)
    assert s.num_valid_queries == 6
    ref = reference_market(
        reference_features(qf.double().numpy(), gf.double().numpy(), "cosine"),
        pids[:6].numpy(),
        pids.numpy(),
        np.zeros(6),
        np.ones(20),
        50,
    )
    assert_matches_reference(s, ref, 50)


# ------------------------------------------------------------------------ prepared gallery
def unit_features(q_pids: np.ndarray, g_pids: np.ndarray, seed: int, dim: int = 32):
    """Query and gallery rows with four entries of +-0.5 (norm exactly 1) near their id's pattern.

    Every distance is then exact in float32 and float64 alike (multiples of 1/4), so exact ties
    are plentiful and the float64 reference must agree with the float32 path on the very order.
    Each image moves each of its identity's four entries elsewhere with probability 0.35.
    """
    rng = np.random.default_rng(seed)
    ids = np.union1d(q_pids, g_pids)
    pattern = {p: (rng.choice(dim, 4, replace=False), rng.choice([-0.5, 0.5], 4)) for p in ids}

    def images(pids: np.ndarray) -> np.ndarray:
        out = np.zeros((len(pids), dim), dtype=np.float32)
        for i, p in enumerate(pids):
            pos, sign = pattern[p][0].copy(), pattern[p][1]
            for k in np.flatnonzero(rng.random(4) < 0.35):
                pos[k] = rng.choice(np.setdiff1d(np.arange(dim), pos))
            out[i, pos] = sign
        return out

    return images(q_pids), images(g_pids)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("chunk_size", [None, 1, 7])
@pytest.mark.parametrize("seed", [0, 1])
def test_prepared_gallery_matches_reference(distance: str, chunk_size: int | None, seed: int) -> None:
    _, qp, gp, qc, gc = random_problem(seed)  # junk, pid-100+ distractors, queries without a match
    qf, gf = unit_features(qp, gp, seed)
    ref_dist = reference_features(qf, gf, distance)
    ref = reference_market(ref_dist, qp, gp, qc, gc, max_rank=20)
    assert ref[3] < len(qp) and 0.1 < ref[0] < 0.95
    assert all(len(np.unique(row)) < len(row) / 2 for row in ref_dist)  # ties everywhere
    index = prepare_gallery(gf, gp, gc, distance)  # type: ignore[arg-type]
    s = evaluate_queries(qf, index, qp, qc, max_rank=20, chunk_size=chunk_size)
    assert_matches_reference(s, ref, 20)
    d = gallery_distances(qf, index)
    assert d.dtype == torch.float32
    np.testing.assert_array_equal(d.numpy(), ref_dist.astype(np.float32))  # exact here


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_prepared_gallery_continuous_features(distance: str) -> None:
    """Float32 distances of clustered continuous features: within 1e-6 of float64, same scores."""
    _, qp, gp, qc, gc = random_problem(7)
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(200, 24))
    qf = (centres[qp] + rng.normal(size=(len(qp), 24))).astype(np.float32)
    gf = (centres[gp] + rng.normal(size=(len(gp), 24))).astype(np.float32)
    ref_dist = reference_features(qf, gf, distance)
    index = prepare_gallery(torch.from_numpy(gf), gp, gc, distance)  # type: ignore[arg-type]
    d = gallery_distances(qf, index)
    scale = 1.0 if distance == "cosine" else float(ref_dist.max())
    np.testing.assert_allclose(d.numpy(), ref_dist, atol=1e-6 * scale)
    ref = reference_market(ref_dist, qp, gp, qc, gc, max_rank=10)
    s = evaluate_queries(qf, index, qp, qc, max_rank=10)
    assert_matches_reference(s, ref, 10)
    # the whole matrix the path ranks gives the same scores through evaluate
    assert evaluate(d, qp, gp, qc, gc, max_rank=10) == s


def test_one_gallery_many_query_sets() -> None:
    """One prepared gallery serves several query sets; nothing is copied or modified."""
    _, qp, gp, qc, gc = random_problem(2)
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(200, 16, generator=g)
    gf = centres[torch.from_numpy(gp)] + torch.randn(len(gp), 16, generator=g)
    gf0 = gf.clone()
    index = prepare_gallery(gf, gp, gc, "cosine")
    assert index.features.data_ptr() == gf.data_ptr()  # float32 input is used as it is
    assert len(index) == len(gp) and index.device == gf.device
    for noise in (0.5, 1.0, 2.0):
        qf = centres[torch.from_numpy(qp)] + noise * torch.randn(len(qp), 16, generator=g)
        s = evaluate_queries(qf, index, qp, qc, max_rank=10)
        assert s == evaluate_features(qf, gf, qp, gp, qc, gc, max_rank=10)
        ref = reference_market(reference_features(qf.numpy(), gf.numpy(), "cosine"), qp, gp, qc, gc, 10)
        assert_matches_reference(s, ref, 10)
    assert torch.equal(gf, gf0)


def test_gallery_from_float64_is_one_float32_copy() -> None:
    _, qp, gp, qc, gc = random_problem(4)
    rng = np.random.default_rng(4)
    gf = rng.normal(size=(len(gp), 8))
    qf = rng.normal(size=(len(qp), 8))
    for distance in ("cosine", "euclidean"):
        a = prepare_gallery(gf, gp, gc, distance)  # type: ignore[arg-type]
        b = prepare_gallery(gf.astype(np.float32), gp, gc, distance)  # type: ignore[arg-type]
        assert a.features.dtype == torch.float32 and torch.equal(a.features, b.features)
        assert evaluate_queries(qf, a, qp, qc) == evaluate_queries(qf.astype(np.float32), b, qp, qc)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_gallery_index_pickles(distance: str) -> None:
    _, qp, gp, qc, gc = random_problem(6)
    qf, gf = unit_features(qp, gp, 6)
    index = prepare_gallery(gf, gp, gc, distance)  # type: ignore[arg-type]
    copy = pickle.loads(pickle.dumps(index))
    assert isinstance(copy, GalleryIndex) and copy.distance == distance
    assert torch.equal(copy.features, index.features) and torch.equal(copy.pids, index.pids)
    assert evaluate_queries(qf, copy, qp, qc) == evaluate_queries(qf, index, qp, qc)
    assert repr(copy) == f"GalleryIndex({len(gp)} x 32, {distance}, cpu)"


def test_prepared_gallery_bad_inputs() -> None:
    gf = np.ones((3, 4), dtype=np.float32)
    gf[1, 2] = np.nan
    with pytest.raises(AdvbenchError, match=r"^gallery features: 1 of 3 feature rows contain NaN or Inf$"):
        prepare_gallery(gf, [0, 1, 2], [0, 0, 0])
    with pytest.raises(AdvbenchError, match="gallery features: 1 of 2 feature rows contain NaN or Inf"):
        prepare_gallery(np.array([[1e39, 0.0], [1.0, 0.0]]), [0, 1], [0, 0])  # Inf in float32
    with pytest.raises(AdvbenchError, match="unknown distance"):
        prepare_gallery(np.ones((2, 4)), [0, 1], [0, 0], "manhattan")  # type: ignore[arg-type]
    with pytest.raises(AdvbenchError, match="g_pids must be 1-D with 2 entries"):
        prepare_gallery(np.ones((2, 4)), [0, 1, 2], [0, 0])
    with pytest.raises(AdvbenchError, match="g_camids must hold integers"):
        prepare_gallery(np.ones((2, 4)), [0, 1], [0.0, 1.0])
    with pytest.raises(AdvbenchError, match="must be 2-D"):
        prepare_gallery(np.ones(4), [0], [0])
    with pytest.raises(AdvbenchError, match="must be floating point"):
        prepare_gallery(np.ones((2, 4), dtype=np.int64), [0, 1], [0, 0])
    index = prepare_gallery(np.ones((2, 4)), [0, 1], [0, 0])
    qf = np.ones((3, 4))
    qf[2, 0] = -np.inf
    with pytest.raises(AdvbenchError, match=r"^query features: 1 of 3 feature rows contain NaN or Inf$"):
        evaluate_queries(qf, index, [0, 1, 0], [1, 1, 1])
    with pytest.raises(AdvbenchError, match="feature dimensions differ: query 5 vs gallery 4"):
        evaluate_queries(np.ones((1, 5)), index, [0], [1])
    with pytest.raises(AdvbenchError, match="q_camids must be 1-D with 1 entries"):
        evaluate_queries(np.ones((1, 4)), index, [0], [1, 1])
    with pytest.raises(AdvbenchError, match="gallery must be a GalleryIndex"):
        evaluate_queries(np.ones((1, 4)), np.ones((2, 4)), [0], [1])  # type: ignore[arg-type]
    with pytest.raises(AdvbenchError, match=r"distances .* 1 of 1 rows contain NaN or Inf"):
        evaluate_queries(
            np.full((1, 4), 1e38), prepare_gallery(np.ones((2, 4)), [0, 1], [0, 0], "euclidean"), [0], [1]
        )
    with pytest.raises(AdvbenchError, match="contiguous float32"):
        GalleryIndex(
            torch.ones(2, 4, dtype=torch.float64), index.pids, index.camids, "cosine", index.inv_norms
        )
    with pytest.raises(AdvbenchError, match="norm term"):
        GalleryIndex(index.features, index.pids, index.camids, "euclidean", inv_norms=index.inv_norms)


def test_evaluate_counts_inf_rows_from_the_sorted_ends() -> None:
    dist = np.array([[0.1, np.inf, 0.3], [-np.inf, 0.2, 0.3], [0.1, 0.2, 0.3]])
    with pytest.raises(AdvbenchError, match=r"^distmat \(query rows 0..2\): 2 of 3 rows contain NaN or Inf$"):
        evaluate(dist, [1, 2, 3], [1, 2, 3], [0, 0, 0], [1, 1, 1])
