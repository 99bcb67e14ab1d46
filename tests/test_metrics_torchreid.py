"""torchreid's evaluator as an oracle for :mod:`advbench.metrics.reid`.

torchreid's ``evaluate_rank`` (deep-person-reid, https://github.com/KaiyangZhou/deep-person-reid;
its Python path, as the Cython one is not built by the PyPI package) against advbench on the same
distance matrices:

* Market-1501 protocol: mAP and CMC (ranks 1, 5, 10 and the whole curve to 50) to 1e-6, on random
  Market-shaped problems with pid-0 distractors, same-id same-camera junk, and queries that have no
  true match (both toolkits skip them and average over the rest: the same convention). Distances are
  float64 and free of ties, since torchreid's ``np.argsort`` is not stable and advbench's sort is.
* ``use_metric_cuhk03=True`` against ``evaluate_cuhk03_classic`` (``--protocol cuhk03-classic``).
  Both draw one gallery image per identity at random, 10 times per query; torchreid from NumPy's
  global generator, advbench from its own seeded ones, so their CMCs are equal only in expectation.
  The test computes that expectation exactly (per query, the drawn true match is uniform over the
  true matches and each other identity's draw ranks before it independently, a Poisson-binomial
  count) and checks both toolkits against it within five standard errors of their draws; on a gallery
  with one image per identity nothing is random and the two CMCs must be equal to 1e-6. mAP is not
  sampled in either toolkit (full list): equal to 1e-6.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip(
    "torchreid", reason='the torchreid extra is not installed (pip install -e ".[torchreid]")'
)

with warnings.catch_warnings():  # "Cython evaluation ... is unavailable, now use python evaluation."
    warnings.simplefilter("ignore")
    from torchreid.reid.metrics import evaluate_rank

from advbench.metrics.reid import evaluate, evaluate_cuhk03_classic

Problem = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def market_problem(
    seed: int,
    num_query: int = 300,
    num_gallery: int = 1500,
    num_ids: int = 100,
    num_cams: int = 6,
    distractors: int = 250,
    unmatched_ids: int = 8,
) -> Problem:
    """A random Market-shaped problem: float64 distances without ties, ids seen by several cameras.

    ``unmatched_ids`` query identities are absent from the gallery; one more is in the gallery only
    under its query's camera (all junk): both kinds of query have no true match.
    """
    rng = np.random.default_rng(seed)
    g_pids = np.concatenate(
        [rng.integers(1, num_ids + 1, num_gallery - distractors), np.zeros(distractors, int)]
    )
    g_cams = rng.integers(0, num_cams, num_gallery)
    q_pids = rng.integers(1, num_ids + unmatched_ids + 1, num_query)
    q_cams = rng.integers(0, num_cams, num_query)
    junk_only = num_ids  # every gallery image of this id shares the camera of every query of it
    g_cams[g_pids == junk_only] = 0
    q_cams[q_pids == junk_only] = 0
    same = q_pids[:, None] == g_pids[None, :]
    dist = rng.random((num_query, num_gallery)) - 0.6 * same * rng.random((num_query, num_gallery))
    assert (np.diff(np.sort(dist, axis=1), axis=1) > 0).all()  # no ties
    return dist, q_pids, g_pids, q_cams, g_cams


def _valid(q_pids, g_pids, q_cams, g_cams) -> int:
    match = (q_pids[:, None] == g_pids[None, :]) & (q_cams[:, None] != g_cams[None, :])
    return int(match.any(1).sum())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_market_protocol_matches_torchreid(seed: int) -> None:
    problem = market_problem(seed)
    cmc, mAP = evaluate_rank(*problem, max_rank=50, use_metric_cuhk03=False, use_cython=False)
    ours = evaluate(*problem, max_rank=50)
    valid = _valid(*problem[1:])
    assert 0 < valid < len(problem[1])  # some queries have no true match, and both skip them
    assert ours.num_valid_queries == valid
    assert abs(ours.mAP - float(mAP)) < 1e-6
    for k in (1, 5, 10):
        assert abs(ours.rank(k) - float(cmc[k - 1])) < 1e-6, k
    np.testing.assert_allclose(ours.cmc, cmc, atol=1e-6, rtol=0)


def cuhk03_problem(seed: int, num_ids: int = 50, per_cam: int = 3, queries_per_id: int = 1) -> Problem:
    """Classic-CUHK03-shaped: two cameras, ``per_cam`` gallery images of each id under each."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, num_ids + 1)
    g_pids = np.repeat(ids, 2 * per_cam)
    g_cams = np.tile(np.repeat([0, 1], per_cam), num_ids)
    q_pids = np.repeat(ids, queries_per_id)
    q_cams = rng.integers(0, 2, len(q_pids))
    same = q_pids[:, None] == g_pids[None, :]
    dist = rng.random((len(q_pids), len(g_pids))) - 0.5 * same * rng.random((len(q_pids), len(g_pids)))
    return dist, q_pids, g_pids, q_cams, g_cams


def expected_single_shot_cmc(problem: Problem, max_rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-query expectation of the single-gallery-shot CMC ``[valid queries, max_rank]``.

    After junk removal, the drawn true match is uniform over the query's true matches; for a true
    match at kept position r, another identity with n images of which b rank before r is drawn
    before it with probability b / n, independently of the others; the rank is one plus the sum of
    those Bernoulli draws, whose distribution is built one identity at a time.
    """
    dist, q_pids, g_pids, q_cams, g_cams = problem
    rows = []
    for i in range(dist.shape[0]):
        order = np.argsort(dist[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_cams[order] == q_cams[i]))
        pids = g_pids[order][keep]
        true = np.flatnonzero(pids == q_pids[i])
        if true.size == 0:
            continue
        others = [np.flatnonzero(pids == p) for p in np.unique(pids) if p != q_pids[i]]
        cmc = np.zeros(max_rank)
        for r in true:
            count = np.zeros(max_rank + 1)  # P(k others drawn before), k < max_rank; last bin: more
            count[0] = 1.0
            for positions in others:
                p = float((positions < r).sum()) / len(positions)
                new = count * (1 - p)
                new[1:] += count[:-1] * p
                new[-1] += count[-1] * p  # the last bin absorbs: "max_rank or more before"
                count = new
            cmc += np.cumsum(count[:max_rank])
        rows.append(cmc / true.size)
    return np.asarray(rows), np.asarray(rows).mean(0)


def test_cuhk03_single_shot_gallery_is_deterministic_and_equal() -> None:
    """One gallery image per identity per camera and queries seen by the other camera only: nothing
    to draw, so both toolkits' single-shot CMCs are the Market CMC, exactly."""
    rng = np.random.default_rng(7)
    ids = np.arange(1, 81)
    g_pids, g_cams = ids, np.ones(len(ids), int)
    q_pids, q_cams = ids, np.zeros(len(ids), int)
    dist = rng.random((len(ids), len(ids))) - 0.5 * np.eye(len(ids)) * rng.random((len(ids), len(ids)))
    problem = (dist, q_pids, g_pids, q_cams, g_cams)
    cmc, mAP = evaluate_rank(*problem, max_rank=20, use_metric_cuhk03=True, use_cython=False)
    ours = evaluate_cuhk03_classic(*problem, max_rank=20)
    market = evaluate(*problem, max_rank=20)
    np.testing.assert_allclose(ours.cmc, cmc, atol=1e-6, rtol=0)
    np.testing.assert_allclose(market.cmc, cmc, atol=1e-6, rtol=0)
    assert abs(ours.mAP - float(mAP)) < 1e-6


@pytest.mark.parametrize("seed", [0, 1])
def test_cuhk03_metric_matches_torchreid_in_expectation(seed: int) -> None:
    max_rank, calls = 10, 20  # torchreid draws 10 times per call: 200 draws per query
    problem = cuhk03_problem(seed)
    per_query, exact = expected_single_shot_cmc(problem, max_rank)
    np.random.seed(seed)
    runs = [
        evaluate_rank(*problem, max_rank=max_rank, use_metric_cuhk03=True, use_cython=False)
        for _ in range(calls)
    ]
    theirs = np.mean([cmc for cmc, _ in runs], axis=0)
    repeats = 10 * calls
    ours = evaluate_cuhk03_classic(*problem, max_rank=max_rank, repeats=repeats, seed=seed)
    # one query's rank-k over R draws is a mean of R Bernoulli(p) draws: variance p(1 - p) / R
    se = np.sqrt((per_query * (1 - per_query)).sum(0) / repeats) / len(per_query)
    assert (np.abs(theirs - exact) <= 5 * se + 1e-9).all(), (theirs - exact, se)
    assert (np.abs(np.asarray(ours.cmc) - exact) <= 5 * se + 1e-9).all(), (np.asarray(ours.cmc) - exact, se)
    assert not np.allclose(exact, evaluate(*problem, max_rank=max_rank).cmc)  # sampling matters here
    # mAP: the full list in both, not sampled
    market = evaluate(*problem, max_rank=max_rank)
    for _, mAP in runs:
        assert abs(float(mAP) - market.mAP) < 1e-6 and abs(ours.mAP - market.mAP) < 1e-6


def test_cuhk03_protocol_defaults_are_torchreids() -> None:
    """``--protocol cuhk03-classic`` runs the default ``repeats``: 10, torchreid's ``num_repeats``."""
    import inspect

    assert inspect.signature(evaluate_cuhk03_classic).parameters["repeats"].default == 10
