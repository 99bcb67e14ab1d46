"""Retrieval metrics for person re-ID: mAP, CMC and mINP under the Market-1501 protocol.

The protocol is the one of torchreid's and fast-reid's ``eval_market1501``, used here for every
dataset:

* each query ranks the whole gallery by ascending distance (a *stable* sort, so ties are broken by
  gallery index and results are deterministic);
* gallery items with the query's pid *and* the query's camera are junk and removed from that
  query's list; everything else stays (pid-0 distractors, other ids from the same camera);
* AP is plain (non-interpolated) average precision over the **full** remaining list: the mean of
  precision@k at every true match;
* CMC@k is 1 when the first true match is within the top k; INP = (#true matches) / (rank of the
  last true match);
* queries without any true match are skipped; the scores average over the remaining ones.

:func:`evaluate` ranks a given matrix in its own dtype (half precision is widened to float32 and
integers to float64, both exactly), so the order is always that of the input values;
:func:`evaluate_queries` ranks float32 distances from features against a :class:`GalleryIndex`
prepared once per gallery. Queries are processed in chunks of about ``CHUNK_ELEMENTS`` distances
whose buffers are reused: MSMT17 (11,659 x 82,161) needs about 100 MB beyond the features whatever
the device, and the full distance matrix is never built.

This module is the public face; the parts live below it: :mod:`advbench.metrics.reid_inputs`
(input checks, chunk size), :mod:`advbench.metrics.reid_ranker` (the sort-and-score core,
:class:`ReidScores`), :mod:`advbench.metrics.reid_gallery` (the prepared gallery and its
distances) and :mod:`advbench.metrics.reid_cuhk03` (:func:`evaluate_cuhk03_classic`, the
single-gallery-shot CMC of the classic CUHK03 protocol).
"""

from __future__ import annotations

import torch
from torch import Tensor

from advbench.api import Distance
from advbench.metrics.reid_cuhk03 import evaluate_cuhk03_classic
from advbench.metrics.reid_gallery import (
    GalleryIndex,
    _queries,
    distance_matrix,
    gallery_distances,
    prepare_gallery,
)
from advbench.metrics.reid_inputs import (
    CHUNK_ELEMENTS,  # noqa: F401  (importable from here)
    ArrayLike,
    _check_chunk,
    _check_distance,
    _check_max_rank,
    _prepare,
    default_chunk_size,
)
from advbench.metrics.reid_ranker import ReidScores, _PidGroups, _Ranker

__all__ = [
    "GalleryIndex",
    "ReidScores",
    "default_chunk_size",
    "distance_matrix",
    "evaluate",
    "evaluate_cuhk03_classic",
    "evaluate_features",
    "evaluate_queries",
    "gallery_distances",
    "prepare_gallery",
]


def evaluate(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> ReidScores:
    """mAP, CMC and mINP of a ``[num_query, num_gallery]`` distance matrix (Market-1501 protocol).

    Accepts torch tensors (any device; the work happens there) or NumPy arrays, ranked in their
    own dtype. ``chunk_size`` queries are ranked at a time (default: about ``CHUNK_ELEMENTS`` /
    num_gallery); the result does not depend on it. Raises :class:`AdvbenchError` on NaN/Inf
    distances, mismatched shapes, or when no query has a true match.
    """
    max_rank = _check_max_rank(max_rank)
    dist, qp, gp, qc, gc = _prepare(distmat, q_pids, g_pids, q_camids, g_camids)
    num_q, num_g = dist.shape
    chunk = min(_check_chunk(chunk_size, num_g), num_q)
    ranker = _Ranker(chunk, _PidGroups.of(gp), gc, max_rank)
    for s in range(0, num_q, chunk):
        d = dist[s : s + chunk]
        ranker.score(
            d, qp[s : s + chunk], qc[s : s + chunk], f"distmat (query rows {s}..{s + d.shape[0] - 1})"
        )
    return ranker.acc.scores()


def evaluate_queries(
    q_feats: ArrayLike,
    gallery: GalleryIndex,
    q_pids: ArrayLike,
    q_camids: ArrayLike,
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> ReidScores:
    """:func:`evaluate` of query features against a prepared gallery, one chunk at a time.

    The float32 distances (see :func:`gallery_distances`) of ``chunk_size`` queries (default
    about ``CHUNK_ELEMENTS`` / G) are computed on the gallery's device into a reused buffer and
    ranked there; the full matrix never exists. Query rows with NaN or Inf raise
    :class:`AdvbenchError` saying how many rows are bad.
    """
    max_rank = _check_max_rank(max_rank)
    qf, qp, qc = _queries(q_feats, gallery, q_pids, q_camids)
    assert qp is not None and qc is not None
    num_q, num_g = qf.shape[0], len(gallery)
    chunk = min(_check_chunk(chunk_size, num_g), num_q)
    ranker = _Ranker(chunk, gallery._groups, gallery.camids, max_rank)
    buf = torch.empty(chunk, num_g, dtype=torch.float32, device=gallery.device)
    for s in range(0, num_q, chunk):
        d = gallery._distances(qf[s : s + chunk], out=buf[: min(chunk, num_q - s)])
        ranker.score(
            d, qp[s : s + chunk], qc[s : s + chunk], f"distances (query rows {s}..{s + d.shape[0] - 1})"
        )
    return ranker.acc.scores()


def evaluate_features(
    q_feats: ArrayLike,
    g_feats: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    distance: Distance = "cosine",
    max_rank: int = 50,
    chunk_size: int | None = None,
) -> ReidScores:
    """:func:`evaluate_queries` against ``prepare_gallery(g_feats, g_pids, g_camids, distance)``.

    One-off convenience: the work happens on the device of ``g_feats``. To rank several query
    sets against one gallery, prepare it once instead.
    """
    _check_distance(distance)
    gallery = prepare_gallery(g_feats, g_pids, g_camids, distance)
    return evaluate_queries(q_feats, gallery, q_pids, q_camids, max_rank=max_rank, chunk_size=chunk_size)


def top_matches(
    q_feats: ArrayLike, gallery: GalleryIndex, q_pids: ArrayLike, q_camids: ArrayLike, k: int = 5
) -> tuple[Tensor, Tensor]:
    """Each query's first ``k`` gallery indices ``[n, k]`` as :func:`evaluate_queries` ranks them
    (junk, same id and camera, removed) and whether each is a true match (same id).

    For showing what an attack does to a few rankings; ties keep gallery order (a stable sort).
    """
    qf, qp, qc = _queries(q_feats, gallery, q_pids, q_camids)
    assert qp is not None and qc is not None
    dist = gallery._distances(qf).clone()
    junk = (gallery.pids[None, :] == qp[:, None]) & (gallery.camids[None, :] == qc[:, None])
    dist.masked_fill_(junk, float("inf"))
    order = torch.sort(dist, dim=1, stable=True).indices[:, : min(k, len(gallery))]
    return order, gallery.pids[order] == qp[:, None]
