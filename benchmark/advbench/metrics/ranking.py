"""Scores of targeted and demote ranking attacks: where the chosen candidates land in a query's ranking.

A targeted ranking attack (Zhou et al., "Adversarial Ranking Attack and Defense", ECCV 2020; official
code https://github.com/cdluminate/advrank) perturbs a query so that ``k`` chosen gallery candidates
rise in its ranking (``goal="targeted"``) or sink (``goal="demote"``). These scores measure that:

* the **rank** of a candidate is its 0-based position in its query's ranking of the whole gallery by
  ascending distance (:func:`candidate_ranks`); the **normalised rank** divides it by ``G - 1`` so
  that 0 is the top and 1 the bottom (:func:`normalised_ranks`). The mean normalised rank of the
  candidates before and after the attack is the paper's measure of success (lower is better for a
  targeted attacker, higher for a demote attacker). advrank divides by ``G`` instead, so its values
  are ``(G - 1) / G`` times ours;
* the **top-k shares**: the percentage of (query, candidate) pairs whose candidate ranks within the
  first 1, 5 or 10 places (:func:`target_scores`);
* paired bootstrap intervals over queries of all of these, clean and adversarial, and of their
  changes (:func:`target_intervals`, built on :mod:`advbench.metrics.bootstrap`);
* the seeded rule that chooses the candidates (:func:`draw_targets`).

**Ties.** A candidate's rank counts the other gallery items strictly closer to the query, plus,
by default (``ties="after"``), every other item at exactly the candidate's distance: the candidate
is placed after all of its ties, as if the tied items came first. advrank's own rank counts only
the strictly closer items (``ties="before"``), which credits a targeted attack with every tie: a
query whose features collapse to be equidistant from the gallery would put every candidate at
rank 0. The default is therefore pessimistic for the candidate, which is conservative for the
usual targeted goal; a demote score that must not credit ties to the attacker can pass
``ties="before"``. Either rule depends only on the distances, never on the gallery's order.
With real-valued distances ties are rare (duplicate images, degenerate features).

Every function is pure: nothing is cached, seeded state is local.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from advbench.api import AdvbenchError
from advbench.metrics.bootstrap import interval, resample_counts, resampled_means

__all__ = [
    "TOPK",
    "TargetScores",
    "candidate_ranks",
    "draw_targets",
    "normalised_ranks",
    "target_intervals",
    "target_scores",
]

#: The cut-offs of the top-k shares.
TOPK: tuple[int, ...] = (1, 5, 10)

Ties = Literal["after", "before"]

#: How many random keys :func:`draw_targets` holds at a time (it draws whole query rows per block).
_KEY_BLOCK = 1 << 22


def _check_candidates(distmat: Tensor, candidates: Tensor) -> None:
    if not isinstance(distmat, Tensor) or distmat.ndim != 2:
        shape = tuple(distmat.shape) if isinstance(distmat, Tensor) else type(distmat).__name__
        raise AdvbenchError(f"distmat must be a 2-D tensor [queries, gallery], got {shape}")
    if not distmat.is_floating_point():
        raise AdvbenchError(f"distmat must be floating point, got {distmat.dtype}")
    if not isinstance(candidates, Tensor) or candidates.ndim != 2:
        shape = tuple(candidates.shape) if isinstance(candidates, Tensor) else type(candidates).__name__
        raise AdvbenchError(f"candidates must be a 2-D tensor [queries, k], got {shape}")
    if candidates.dtype.is_floating_point or candidates.dtype.is_complex or candidates.dtype == torch.bool:
        raise AdvbenchError(f"candidates must be integer gallery indices, got {candidates.dtype}")
    q, g = distmat.shape
    if candidates.shape[0] != q:
        raise AdvbenchError(
            f"candidates {tuple(candidates.shape)} do not match distmat {tuple(distmat.shape)}: "
            "need one row per query"
        )
    if candidates.shape[1] < 1:
        raise AdvbenchError("candidates must hold at least one candidate per query, got k=0")
    if candidates.numel() and (int(candidates.min()) < 0 or int(candidates.max()) >= g):
        raise AdvbenchError(
            f"candidate index out of range: indices span [{int(candidates.min())}, "
            f"{int(candidates.max())}] but the gallery has {g} items"
        )
    if bool(torch.isnan(distmat).any()):
        raise AdvbenchError("distmat holds NaN distances; candidate ranks are undefined")


def candidate_ranks(distmat: Tensor, candidates: Tensor, *, ties: Ties = "after") -> Tensor:
    """0-based rank of each candidate in its query's ranking of the whole gallery: long ``[Q, k]``.

    ``distmat[i, j]`` is the distance from query ``i`` to gallery item ``j`` (smaller = closer;
    ``±inf`` allowed, NaN is an error) and ``candidates[i]`` are gallery indices. The rank of
    candidate ``c`` of query ``i`` is the number of other gallery items ``j`` with
    ``distmat[i, j] < distmat[i, c]``, plus with ``ties="after"`` (default) those with
    ``distmat[i, j] == distmat[i, c]`` (see the module's note on ties). Each candidate is ranked
    against the whole gallery, other candidates included (no junk or same-camera filtering as in
    mAP). The result lies on ``distmat``'s device
    (CPU or CUDA); one sort of each row, memory O(Q·G).
    """
    if ties not in ("after", "before"):
        raise AdvbenchError(f"ties must be 'after' or 'before', got {ties!r}")
    _check_candidates(distmat, candidates)
    d = distmat if distmat.dtype in (torch.float32, torch.float64) else distmat.float()  # exact
    idx = candidates.to(device=d.device, dtype=torch.long)
    own = d.gather(1, idx).contiguous()  # [Q, k]
    ordered = d.sort(dim=1).values.contiguous()  # [Q, G]
    if ties == "after":
        # items at distance <= the candidate's, itself excluded
        return torch.searchsorted(ordered, own, right=True) - 1
    return torch.searchsorted(ordered, own, right=False)


def normalised_ranks(ranks: Tensor, n_gallery: int) -> Tensor:
    """``ranks / (n_gallery - 1)`` as float64: 0 at the top of the ranking, 1 at the bottom.

    A gallery of one item has only the top place, so its rank 0 normalises to 0.
    """
    if n_gallery < 1:
        raise AdvbenchError(f"n_gallery must be >= 1, got {n_gallery}")
    r = torch.as_tensor(ranks)
    if r.numel() and (int(r.min()) < 0 or int(r.max()) > n_gallery - 1):
        raise AdvbenchError(
            f"ranks span [{int(r.min())}, {int(r.max())}], outside [0, {n_gallery - 1}] "
            f"for a gallery of {n_gallery}"
        )
    r = r.to(torch.float64)
    return r / (n_gallery - 1) if n_gallery > 1 else torch.zeros_like(r)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)  # a private copy
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class TargetScores:
    """Where the chosen candidates rank, summed up and per query (the bootstrap needs the latter).

    ``mean_rank`` is the mean normalised rank over all (query, candidate) pairs (0 top, 1 bottom);
    ``top1``/``top5``/``top10`` are the percentages of pairs whose candidate ranks within the first
    1/5/10 places. ``query_rank[i]`` is query ``i``'s mean normalised rank over its candidates and
    ``query_top1[i]`` etc. the fraction of its candidates within the top 1/5/10, read-only float64
    ``[Q]``; as every query has ``k`` candidates, the means of these are the summary values.
    ``n_gallery`` and ``k`` identify the problem, so clean and adversarial scores can be checked to match.
    """

    mean_rank: float
    top1: float
    top5: float
    top10: float
    query_rank: np.ndarray
    query_top1: np.ndarray
    query_top5: np.ndarray
    query_top10: np.ndarray
    n_gallery: int
    k: int

    @property
    def n_queries(self) -> int:
        return int(self.query_rank.shape[0])


def target_scores(distmat: Tensor, candidates: Tensor, *, ties: Ties = "after") -> TargetScores:
    """The :class:`TargetScores` of ``candidates`` (``[Q, k]`` gallery indices) under ``distmat`` ``[Q, G]``.

    Ranks as in :func:`candidate_ranks` (same ``ties`` rule); at least one query is needed.
    """
    ranks = candidate_ranks(distmat, candidates, ties=ties)
    return scores_from_ranks(ranks, distmat.shape[1])


def scores_from_ranks(ranks: Tensor | np.ndarray, n_gallery: int) -> TargetScores:
    """The :class:`TargetScores` of candidate ranks ``[Q, k]`` already computed against a gallery
    of ``n_gallery`` items (what an evaluation record stores)."""
    ranks = torch.as_tensor(np.asarray(ranks) if not isinstance(ranks, Tensor) else ranks)
    if ranks.ndim != 2 or ranks.shape[1] < 1 or ranks.is_floating_point():
        raise AdvbenchError(
            f"candidate ranks must be an integer [Q, k] array with k >= 1, got {tuple(ranks.shape)}"
        )
    q, g = ranks.shape[0], int(n_gallery)
    if q < 1:
        raise AdvbenchError("target scores need at least one query, got Q=0")
    if int(ranks.min()) < 0 or int(ranks.max()) >= g:
        raise AdvbenchError(f"candidate ranks must lie in [0, {g - 1}] for a gallery of {g}")
    per_query_rank = normalised_ranks(ranks, g).mean(dim=1).cpu().numpy()
    shares = [(ranks < t).to(torch.float64).mean(dim=1).cpu().numpy() for t in TOPK]
    return TargetScores(
        mean_rank=float(per_query_rank.mean()),
        top1=float(100.0 * shares[0].mean()),
        top5=float(100.0 * shares[1].mean()),
        top10=float(100.0 * shares[2].mean()),
        query_rank=_frozen(per_query_rank),
        query_top1=_frozen(shares[0]),
        query_top5=_frozen(shares[1]),
        query_top10=_frozen(shares[2]),
        n_gallery=int(g),
        k=int(ranks.shape[1]),
    )


def target_intervals(
    clean: TargetScores,
    adv: TargetScores,
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Paired bootstrap intervals (``level``, default 95%) of the target scores of one leaderboard row.

    ``clean`` and ``adv`` score the same queries with the same candidates, before and after the
    attack. Every quantity is drawn from the same resampled queries
    (:func:`advbench.metrics.bootstrap.resample_counts` with ``resamples`` and ``seed``):

    * ``clean_target_rank`` / ``adv_target_rank``: mean normalised rank (fraction, 0 top, 1 bottom);
    * ``target_rank_change``: adversarial minus clean mean normalised rank, the resampled mean of
      per-query differences (negative = the candidates rose, the aim of a targeted attack);
    * ``clean_target_top{1,5,10}`` / ``adv_target_top{1,5,10}``: percentage of pairs within the top
      1/5/10;
    * ``target_top{1,5,10}_change``: adversarial minus clean share, in percent points.
    """
    if (clean.n_queries, clean.k, clean.n_gallery) != (adv.n_queries, adv.k, adv.n_gallery):
        raise AdvbenchError(
            f"clean and adversarial target scores differ in (queries, k, gallery): "
            f"{(clean.n_queries, clean.k, clean.n_gallery)} vs {(adv.n_queries, adv.k, adv.n_gallery)}"
        )
    names: list[str] = ["clean_target_rank", "adv_target_rank", "target_rank_change"]
    rows: list[np.ndarray] = [clean.query_rank, adv.query_rank, adv.query_rank - clean.query_rank]
    scales: list[float] = [1.0, 1.0, 1.0]
    for t in TOPK:
        c, a = getattr(clean, f"query_top{t}"), getattr(adv, f"query_top{t}")
        names += [f"clean_target_top{t}", f"adv_target_top{t}", f"target_top{t}_change"]
        rows += [c, a, a - c]
        scales += [100.0, 100.0, 100.0]
    means = resampled_means(np.stack(rows), resample_counts(clean.n_queries, resamples, seed))
    return {name: interval(scale * m, level) for name, scale, m in zip(names, scales, means)}


def _as_pids(pids: Tensor | np.ndarray, what: str) -> np.ndarray:
    a = pids.detach().cpu().numpy() if isinstance(pids, Tensor) else np.asarray(pids)
    if a.ndim != 1:
        raise AdvbenchError(f"{what} must be 1-D, got shape {a.shape}")
    return a


def draw_targets(query_pids: Tensor, gallery_pids: Tensor, k: int, seed: int) -> Tensor:
    """Per query, ``k`` gallery indices of other identities, uniformly without replacement: long ``[Q, k]``.

    Rule: gallery item ``j`` is eligible for query ``i`` when ``gallery_pids[j] != query_pids[i]``
    (every other label counts, junk and distractor labels included). Query ``i`` takes the next
    ``G`` 64-bit words of ``numpy.random.PCG64(seed)``'s raw stream (words ``i·G`` to ``i·G + G - 1``),
    one per gallery item; its targets are the ``k`` eligible items with the smallest words
    (their top 63 bits; equal words, which are vanishingly rare, go to the smaller index), listed in
    ascending gallery order. Ordering by i.i.d. uniform keys is a uniform random permutation, so
    each ``k``-subset of the eligible items is equally likely. PCG64's raw stream is fixed by NumPy
    across versions and platforms (NEP 19), so the draw is the same on every machine; query ``i``'s
    row depends only on ``seed``, ``i``, the gallery and the two labels, not on the other queries.
    The result is on the CPU.
    """
    qp = _as_pids(query_pids, "query_pids")
    gp = _as_pids(gallery_pids, "gallery_pids")
    if k < 1:
        raise AdvbenchError(f"k must be >= 1, got {k}")
    q, g = qp.shape[0], gp.shape[0]
    if q == 0:
        return torch.empty((0, k), dtype=torch.long)
    eligible_counts = g - (qp[:, None] == gp[None, :]).sum(axis=1)
    short = np.flatnonzero(eligible_counts < k)
    if short.size:
        i = int(short[0])
        raise AdvbenchError(
            f"query {i} (pid {qp[i]}) has {int(eligible_counts[i])} gallery images of other identities, "
            f"fewer than k={k} ({short.size} such queries)"
        )
    bitgen = np.random.PCG64(seed)
    chunk = max(1, _KEY_BLOCK // g)  # query rows per block
    out = np.empty((q, k), dtype=np.int64)
    for start in range(0, q, chunk):
        stop = min(q, start + chunk)
        keys = bitgen.random_raw((stop - start) * g).reshape(stop - start, g) >> np.uint64(1)
        # ineligible items get keys >= 2**63, above every eligible key
        keys[qp[start:stop, None] == gp[None, :]] |= np.uint64(1 << 63)
        picked = np.argsort(keys, axis=1, kind="stable")[:, :k]
        out[start:stop] = np.sort(picked, axis=1)
    return torch.from_numpy(out)


@dataclass(frozen=True, eq=False)
class GalleryTargets:
    """The chosen gallery images of a gallery-side craft and, for each, the queries it attacks.

    ``rows`` ``[M]`` are gallery indices (ascending); ``queries[i]`` the query indices image
    ``rows[i]`` should rise for (``targeted``) or sink for (``demote``), 1 to ``k`` of them.
    """

    rows: Tensor
    queries: list[list[int]]

    def padded(self, k: int) -> Tensor:
        """``[M, k]`` query indices, each row's queries repeated in turn to fill ``k`` (for attacks
        that take a fixed number of queries per image)."""
        return torch.tensor([[q[j % len(q)] for j in range(k)] for q in self.queries], dtype=torch.long)

    def pairs(self) -> tuple[Tensor, Tensor]:
        """(query index, gallery index) of every attacked pair, each pair once: long ``[P]`` twice."""
        q = [qi for qs in self.queries for qi in qs]
        g = [int(r) for r, qs in zip(self.rows.tolist(), self.queries, strict=True) for _ in qs]
        return torch.tensor(q, dtype=torch.long), torch.tensor(g, dtype=torch.long)


def draw_gallery_targets(
    query_pids: Tensor,
    query_camids: Tensor,
    gallery_pids: Tensor,
    gallery_camids: Tensor,
    *,
    n_images: int,
    k: int,
    goal: str,
    seed: int,
) -> GalleryTargets:
    """The seeded rule of a gallery-side craft: which gallery images are perturbed, for which queries.

    ``demote`` (candidate attack CA-, hide a person from the queries of their own identity): a
    gallery image is eligible when at least one query shows its identity from another camera (the
    queries that count it as a true match); it attacks up to ``k`` of those queries. ``targeted``
    (CA+, push an image up the rankings of strangers): every gallery image is eligible, and it
    attacks ``k`` queries of other identities (:func:`draw_targets` with the roles swapped). Up to
    ``n_images`` eligible images are chosen uniformly without replacement, and up to ``k`` queries
    per image, each by the smallest keys of ``numpy.random.PCG64`` raw words (seed ``seed`` for the
    images, ``seed + 1`` for the queries), the same on every machine.
    """
    if goal not in ("targeted", "demote"):
        raise AdvbenchError(f"gallery-side targets need goal 'targeted' or 'demote', got {goal!r}")
    if n_images < 1 or k < 1:
        raise AdvbenchError(f"n_images and k must be >= 1, got {n_images} and {k}")
    qp, qc = _as_pids(query_pids, "query_pids"), _as_pids(query_camids, "query_camids")
    gp, gc = _as_pids(gallery_pids, "gallery_pids"), _as_pids(gallery_camids, "gallery_camids")
    own = (gp[:, None] == qp[None, :]) & (gc[:, None] != qc[None, :])  # [G, Q] true-match pairs
    eligible = np.flatnonzero(own.any(axis=1)) if goal == "demote" else np.arange(gp.shape[0])
    if eligible.size == 0:
        raise AdvbenchError("no gallery image is a true match of any query: nothing to demote")
    keys = np.random.PCG64(seed).random_raw(gp.shape[0])[eligible]
    rows = np.sort(eligible[np.argsort(keys, kind="stable")[:n_images]])
    if goal == "targeted":
        chosen = draw_targets(torch.from_numpy(gp[rows]), torch.from_numpy(qp), k, seed + 1).tolist()
        return GalleryTargets(torch.from_numpy(rows), chosen)
    query_keys = np.random.PCG64(seed + 1).random_raw(qp.shape[0])
    chosen = []
    for r in rows:
        mine = np.flatnonzero(own[r])
        chosen.append(sorted(int(i) for i in mine[np.argsort(query_keys[mine], kind="stable")[:k]]))
    return GalleryTargets(torch.from_numpy(rows), chosen)
