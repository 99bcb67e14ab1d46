"""The classic CUHK03 protocol: single-gallery-shot CMC, averaged over random gallery draws.

The protocol of the dataset's paper (Li et al., "DeepReID: Deep Filter Pairing Neural Network for
Person Re-identification", CVPR 2014) as torchreid's ``eval_cuhk03`` implements it: each query is
ranked against one randomly drawn image per gallery identity. Here the draws are seeded, and mAP
and mINP are those of the full list, exactly as :func:`advbench.metrics.reid.evaluate` gives them.
"""

from __future__ import annotations

import numpy as np
import torch

from advbench.api import AdvbenchError
from advbench.metrics.reid_inputs import ArrayLike, _check_chunk, _check_max_rank, _prepare
from advbench.metrics.reid_ranker import ReidScores, _Accumulator, _PidGroups, _Ranker

__all__ = ["evaluate_cuhk03_classic"]


def evaluate_cuhk03_classic(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    repeats: int = 10,
    seed: int = 0,
    chunk_size: int | None = None,
) -> ReidScores:
    """Single-gallery-shot CMC of the classic CUHK03 protocol (torchreid's ``eval_cuhk03``).

    For each query, junk (same pid and camera) is removed as in :func:`evaluate`; then, ``repeats``
    times, one gallery image is drawn at random per gallery identity (for the query's own
    identity, among its cross-camera images), and the rank of the query's drawn true match among
    the drawn images gives that repeat's CMC. The CMC is averaged over repeats and valid queries.
    As in torchreid, mAP and mINP are *not* sampled: they are those of the full list (identical to
    :func:`evaluate`); the classic protocol reports CMC only.

    Draws come from a NumPy generator seeded with ``(seed, query index)``, so the result depends
    on ``seed`` but not on ``chunk_size`` or the device (torchreid draws unseeded).
    """
    max_rank = _check_max_rank(max_rank)
    if int(repeats) < 1:
        raise AdvbenchError(f"repeats must be >= 1, got {repeats}")
    repeats = int(repeats)
    if int(seed) < 0:
        raise AdvbenchError(f"seed must be >= 0, got {seed}")
    dist, qp, gp, qc, gc = _prepare(distmat, q_pids, g_pids, q_camids, g_camids)
    num_q, num_g = dist.shape
    dev = dist.device
    _, group = torch.unique(gp, return_inverse=True)
    num_groups = int(group.max()) + 1
    chunk = min(_check_chunk(chunk_size, num_g, per_query=repeats), num_q)
    full = _Ranker(chunk, _PidGroups.of(gp), gc, max_rank)  # mAP / mINP on the full list
    sampled = _Accumulator(max_rank)  # CMC of the single-shot draws
    for s in range(0, num_q, chunk):
        d = dist[s : s + chunk]
        cq, cc = qp[s : s + chunk], qc[s : s + chunk]
        order, valid = full.score(d, cq, cc, f"distmat (query rows {s}..{s + d.shape[0] - 1})")
        rows = valid.nonzero(as_tuple=True)[0]
        if rows.numel() == 0:
            continue
        n = rows.numel()
        ranked = order[rows]
        match = (gp[ranked] == cq[rows, None]) & (gc[ranked] != cc[rows, None])
        keys = torch.from_numpy(
            np.stack(
                [np.random.default_rng((seed, s + int(r))).random((repeats, num_g)) for r in rows.tolist()]
            )
        ).to(dev)
        junk = (gp[None, :] == cq[rows, None]) & (gc[None, :] == cc[rows, None])
        keys.masked_fill_(junk[:, None, :], -1.0)  # junk is never drawn
        idx = group[None, None, :].expand(n, repeats, num_g)
        best = torch.full((n, repeats, num_groups), -2.0, dtype=torch.float64, device=dev)
        best.scatter_reduce_(2, idx, keys, reduce="amax")
        drawn = (keys == best.gather(2, idx)) & (keys >= 0)
        del keys, best, idx
        drawn = drawn.gather(2, ranked[:, None, :].expand(n, repeats, num_g))
        # Each (query, repeat) drew exactly one true match; its rank = drawn items up to it.
        hit = drawn & match[:, None, :]
        before = drawn.cumsum(2, dtype=torch.int32)
        ranks = before[hit].to(torch.int64)
        sampled.add_ranks(ranks, weight=1.0 / repeats)
        sampled.valid += n
    scores = full.acc.scores()
    cmc = sampled.scores().cmc
    return ReidScores(
        mAP=scores.mAP,
        cmc=cmc,
        mINP=scores.mINP,
        num_valid_queries=scores.num_valid_queries,
        query_ap=scores.query_ap,
    )
