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

Everything is vectorised in torch and computed in float64 (ranking a float32 distance in float64 is
exact, so the order is the one of the input). Queries are processed in chunks so that at most a
chunk of queries x the full gallery is sorted at a time: MSMT17 (11,659 x 82,161) fits in a few
hundred MB whatever the device. :func:`evaluate_features` never builds the full distance matrix.

:func:`evaluate_cuhk03_classic` is the single-gallery-shot CMC of the classic CUHK03 protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from advbench.api import AdvbenchError, Distance

__all__ = [
    "ReidScores",
    "default_chunk_size",
    "distance_matrix",
    "evaluate",
    "evaluate_cuhk03_classic",
    "evaluate_features",
]

# Elements (queries x gallery) handled per chunk when no chunk_size is given. The sort and the
# masks cost about 30 bytes per element, so 2**22 elements keep the extra memory near 130 MB.
CHUNK_ELEMENTS = 2**22

ArrayLike = Tensor | np.ndarray | Sequence[Any]


@dataclass(frozen=True)
class ReidScores:
    """Retrieval scores as fractions in [0, 1] (the leaderboard turns them into percent).

    ``cmc[k - 1]`` is rank-k accuracy; it has ``max_rank`` entries and saturates at 1 for ranks
    beyond the length of a query's list. ``num_valid_queries`` counts the queries that had at
    least one true match and were therefore averaged.
    """

    mAP: float
    cmc: list[float]
    mINP: float
    num_valid_queries: int

    def rank(self, k: int) -> float:
        """Rank-k accuracy (1-based: ``rank(1)`` is rank-1)."""
        if not 1 <= k <= len(self.cmc):
            raise AdvbenchError(f"rank-{k} is not available: CMC was computed up to rank {len(self.cmc)}")
        return self.cmc[k - 1]


# ------------------------------------------------------------------------------------ helpers
def _tensor(x: ArrayLike, device: Any = None) -> Tensor:
    """A tensor view of ``x`` (no copy for tensors and arrays already on ``device``)."""
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    return t if device is None else t.to(device=device)


def _labels(x: ArrayLike, name: str, n: int, device: torch.device) -> Tensor:
    t = _tensor(x)
    if t.ndim != 1 or t.shape[0] != n:
        raise AdvbenchError(f"{name} must be 1-D with {n} entries, got shape {tuple(t.shape)}")
    if t.is_floating_point() or t.is_complex():
        raise AdvbenchError(f"{name} must hold integers, got {t.dtype}")
    return t.to(device=device, dtype=torch.int64)


def default_chunk_size(num_gallery: int, per_query: int = 1) -> int:
    """Queries per chunk so that chunk x gallery (x ``per_query``) stays near ``CHUNK_ELEMENTS``."""
    return max(1, CHUNK_ELEMENTS // max(1, num_gallery * per_query))


def _check_chunk(chunk_size: int | None, num_gallery: int, per_query: int = 1) -> int:
    if chunk_size is None:
        return default_chunk_size(num_gallery, per_query)
    if int(chunk_size) < 1:
        raise AdvbenchError(f"chunk_size must be >= 1, got {chunk_size}")
    return int(chunk_size)


def _check_max_rank(max_rank: int) -> int:
    if int(max_rank) < 1:
        raise AdvbenchError(f"max_rank must be >= 1, got {max_rank}")
    return int(max_rank)


@dataclass
class _Accumulator:
    """Sums over valid queries, merged chunk by chunk."""

    max_rank: int
    ap_sum: float = 0.0
    inp_sum: float = 0.0
    valid: int = 0
    cmc_hist: Tensor | None = None  # counts of first-match ranks 1..max_rank (+1 bin for beyond)

    def add_ranks(self, ranks: Tensor, weight: float = 1.0) -> None:
        """Add first-match ranks (1-based) to the CMC histogram, each counting ``weight``."""
        clipped = ranks.clamp(max=self.max_rank + 1).to("cpu") - 1
        hist = torch.bincount(clipped, minlength=self.max_rank + 1).to(torch.float64) * weight
        self.cmc_hist = hist if self.cmc_hist is None else self.cmc_hist + hist

    def scores(self) -> ReidScores:
        if self.valid == 0 or self.cmc_hist is None:
            raise AdvbenchError(
                "no query has a true match in the gallery (after removing same-id same-camera "
                "images): check the pids and camids of query and gallery"
            )
        cmc = (self.cmc_hist[: self.max_rank].cumsum(0) / self.valid).tolist()
        return ReidScores(
            mAP=self.ap_sum / self.valid,
            cmc=cmc,
            mINP=self.inp_sum / self.valid,
            num_valid_queries=self.valid,
        )


def _rank_chunk(
    dist: Tensor, q_pids: Tensor, q_camids: Tensor, g_pids: Tensor, g_camids: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Rank one chunk of queries against the gallery and find the true matches.

    Returns ``order`` (stable argsort of each row), ``match`` (true match, in ranked order) and,
    for every true match in row-major order, its query row and its 1-based rank among the
    non-junk items. Only the matches are handled sparsely; the rest is O(chunk x gallery) masks.
    """
    num_g = dist.shape[1]
    order = torch.sort(dist, dim=1, stable=True).indices
    same_pid = (g_pids[None, :] == q_pids[:, None]).gather(1, order)
    same_cam = (g_camids[None, :] == q_camids[:, None]).gather(1, order)
    junk = same_pid & same_cam
    match = same_pid & ~same_cam
    del same_pid, same_cam
    hit_rows, hit_cols = match.nonzero(as_tuple=True)
    junk_rows, junk_cols = junk.nonzero(as_tuple=True)
    # Junk items ranked before each hit: both key sets are sorted row-major, so a searchsorted on
    # row * G + col counts the junk keys below a hit, minus those of earlier rows.
    junk_keys = junk_rows * num_g + junk_cols
    hit_keys = hit_rows * num_g + hit_cols
    junk_before = torch.searchsorted(junk_keys, hit_keys) - torch.searchsorted(junk_keys, hit_rows * num_g)
    kept_rank = hit_cols + 1 - junk_before
    return order, match, hit_rows, kept_rank


def _score_chunk(
    acc: _Accumulator,
    dist: Tensor,
    q_pids: Tensor,
    q_camids: Tensor,
    g_pids: Tensor,
    g_camids: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Add one chunk's AP, INP and first-match ranks to ``acc``; returns what CUHK03 reuses."""
    order, match, hit_rows, kept_rank = _rank_chunk(dist, q_pids, q_camids, g_pids, g_camids)
    n = dist.shape[0]
    counts = torch.bincount(hit_rows, minlength=n)
    valid = counts > 0
    if not bool(valid.any()):
        return order, match, valid
    starts = counts.cumsum(0) - counts
    # k-th hit of its row (1-based): position in the row-major hit list minus the row's start.
    k = torch.arange(hit_rows.numel(), device=dist.device) - starts[hit_rows] + 1
    precision = k.to(torch.float64) / kept_rank.to(torch.float64)
    ap = torch.zeros(n, dtype=torch.float64, device=dist.device).index_add_(0, hit_rows, precision)
    ap = ap[valid] / counts[valid].to(torch.float64)
    first = kept_rank[starts[valid]]
    last = kept_rank[starts[valid] + counts[valid] - 1]
    inp = counts[valid].to(torch.float64) / last.to(torch.float64)
    acc.ap_sum += float(ap.sum())
    acc.inp_sum += float(inp.sum())
    acc.valid += int(valid.sum())
    acc.add_ranks(first)
    return order, match, valid


def _check_finite(x: Tensor, what: str) -> None:
    if x.is_floating_point():
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            rows = int(bad.reshape(x.shape[0], -1).any(1).sum())
            raise AdvbenchError(f"{what}: {rows} of {x.shape[0]} rows contain NaN or Inf")


def _prepare(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    dist = _tensor(distmat)
    if dist.ndim != 2:
        raise AdvbenchError(f"distmat must be 2-D [num_query, num_gallery], got shape {tuple(dist.shape)}")
    num_q, num_g = dist.shape
    if num_q == 0 or num_g == 0:
        raise AdvbenchError(f"cannot evaluate with {num_q} queries and {num_g} gallery items")
    if not dist.is_floating_point():
        dist = dist.to(torch.float64)
    dev = dist.device
    return (
        dist,
        _labels(q_pids, "q_pids", num_q, dev),
        _labels(g_pids, "g_pids", num_g, dev),
        _labels(q_camids, "q_camids", num_q, dev),
        _labels(g_camids, "g_camids", num_g, dev),
    )


# ----------------------------------------------------------------------------------- public API
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

    Accepts torch tensors (any device; the work happens there) or NumPy arrays. ``chunk_size``
    queries are ranked at a time (default: about ``CHUNK_ELEMENTS`` / num_gallery); the result
    does not depend on it. Raises :class:`AdvbenchError` on NaN/Inf distances, mismatched
    shapes, or when no query has a true match.
    """
    max_rank = _check_max_rank(max_rank)
    dist, qp, gp, qc, gc = _prepare(distmat, q_pids, g_pids, q_camids, g_camids)
    chunk = _check_chunk(chunk_size, dist.shape[1])
    acc = _Accumulator(max_rank)
    for s in range(0, dist.shape[0], chunk):
        d = dist[s : s + chunk].to(torch.float64)
        _check_finite(d, f"distmat (query rows {s}..{s + d.shape[0] - 1})")
        _score_chunk(acc, d, qp[s : s + chunk], qc[s : s + chunk], gp, gc)
    return acc.scores()


def _features(x: ArrayLike, name: str, device: Any = None) -> tuple[Tensor, bool]:
    """Checked float64 features, and whether they are a private copy (safe to modify in place)."""
    t = _tensor(x, device=device)
    if t.ndim != 2 or t.shape[0] == 0:
        raise AdvbenchError(f"{name} must be 2-D [N, D] with N > 0, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise AdvbenchError(f"{name} must be floating point, got {t.dtype}")
    bad = int((~torch.isfinite(t)).any(1).sum())
    if bad:
        raise AdvbenchError(f"{name}: {bad} of {t.shape[0]} feature rows contain NaN or Inf")
    out = t.to(torch.float64)
    return out, out is not t


def _prepare_gallery(g: Tensor, distance: Distance, owned: bool) -> tuple[Tensor, Tensor | None]:
    """Gallery side of the distance: normalised features (cosine) or features + squared norms.

    ``owned`` features are normalised in place, so the float64 gallery exists only once.
    """
    if distance == "cosine":
        norm = g.norm(dim=1, keepdim=True).clamp_(min=1e-12)
        return (g.div_(norm) if owned else g / norm), None
    if distance == "euclidean":
        return g, (g * g).sum(1)
    raise AdvbenchError(f"unknown distance {distance!r}: use 'cosine' or 'euclidean'")


def _distances(q: Tensor, g: Tensor, g_sq: Tensor | None, distance: Distance) -> Tensor:
    """Distances of a (small) block of queries to the prepared gallery, built in one buffer."""
    if distance == "cosine":
        return (torch.nn.functional.normalize(q, dim=1) @ g.T).neg_().add_(1.0)
    assert g_sq is not None
    d = (q @ g.T).mul_(-2.0).add_((q * q).sum(1, keepdim=True)).add_(g_sq[None, :])
    return d.clamp_(min=0.0)


def distance_matrix(a: ArrayLike, b: ArrayLike, distance: Distance = "cosine") -> Tensor:
    """Float64 distances ``[len(a), len(b)]`` between feature rows.

    ``cosine``: 1 - cos(a, b) on L2-normalised rows, in [0, 2]. ``euclidean``: **squared**
    Euclidean distance (as torchreid's ``euclidean_squared_distance``); the ranking is the same as
    with the plain distance. Meant for small problems; :func:`evaluate_features` avoids the full
    matrix.
    """
    qa, _ = _features(a, "a")
    gb, owned = _features(b, "b", device=qa.device)
    if qa.shape[1] != gb.shape[1]:
        raise AdvbenchError(f"feature dimensions differ: {qa.shape[1]} vs {gb.shape[1]}")
    g, g_sq = _prepare_gallery(gb, distance, owned)
    return _distances(qa, g, g_sq, distance)


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
    """:func:`evaluate` on features, computing the distances one chunk of queries at a time.

    Distances are those of :func:`distance_matrix` (cosine, or squared Euclidean), in float64 on
    the device of ``q_feats``; the gallery is converted to float64 once. Feature rows with NaN
    or Inf raise :class:`AdvbenchError` saying how many rows are bad.
    """
    max_rank = _check_max_rank(max_rank)
    qf, _ = _features(q_feats, "query features")
    gf, owned = _features(g_feats, "gallery features", device=qf.device)
    if qf.shape[1] != gf.shape[1]:
        raise AdvbenchError(f"feature dimensions differ: query {qf.shape[1]} vs gallery {gf.shape[1]}")
    dev = qf.device
    qp = _labels(q_pids, "q_pids", qf.shape[0], dev)
    qc = _labels(q_camids, "q_camids", qf.shape[0], dev)
    gp = _labels(g_pids, "g_pids", gf.shape[0], dev)
    gc = _labels(g_camids, "g_camids", gf.shape[0], dev)
    g, g_sq = _prepare_gallery(gf, distance, owned)
    del gf
    chunk = _check_chunk(chunk_size, g.shape[0])
    acc = _Accumulator(max_rank)
    for s in range(0, qf.shape[0], chunk):
        d = _distances(qf[s : s + chunk], g, g_sq, distance)
        _score_chunk(acc, d, qp[s : s + chunk], qc[s : s + chunk], gp, gc)
        del d
    return acc.scores()


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
    num_g = dist.shape[1]
    dev = dist.device
    _, group = torch.unique(gp, return_inverse=True)
    num_groups = int(group.max()) + 1
    chunk = _check_chunk(chunk_size, num_g, per_query=repeats)
    full = _Accumulator(max_rank)  # mAP / mINP on the full list
    sampled = _Accumulator(max_rank)  # CMC of the single-shot draws
    for s in range(0, dist.shape[0], chunk):
        d = dist[s : s + chunk].to(torch.float64)
        _check_finite(d, f"distmat (query rows {s}..{s + d.shape[0] - 1})")
        cq, cc = qp[s : s + chunk], qc[s : s + chunk]
        order, match, valid = _score_chunk(full, d, cq, cc, gp, gc)
        rows = valid.nonzero(as_tuple=True)[0]
        if rows.numel() == 0:
            continue
        n = rows.numel()
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
        drawn = drawn.gather(2, order[rows, None, :].expand(n, repeats, num_g))
        # Each (query, repeat) drew exactly one true match; its rank = drawn items up to it.
        hit = drawn & match[rows, None, :]
        before = drawn.cumsum(2, dtype=torch.int32)
        ranks = before[hit].to(torch.int64)
        sampled.add_ranks(ranks, weight=1.0 / repeats)
        sampled.valid += n
    scores = full.scores()
    cmc = sampled.scores().cmc
    return ReidScores(mAP=scores.mAP, cmc=cmc, mINP=scores.mINP, num_valid_queries=scores.num_valid_queries)
