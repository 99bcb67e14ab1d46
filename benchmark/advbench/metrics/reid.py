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

Distances from features are float32 (as in torchreid), computed against a :class:`GalleryIndex`
prepared once per gallery and reused for every query set; :func:`evaluate` ranks a given matrix in
its own dtype (half precision is widened to float32 and integers to float64, both exactly), so the
order is always that of the input values. The sort is the only dense step besides the distances:
the scores depend only on where each query's same-identity items land, so those few items are
looked up in the inverse permutation and everything after that is sparse. Queries are processed in
chunks of about ``CHUNK_ELEMENTS`` distances whose buffers are reused: MSMT17 (11,659 x 82,161)
needs about 100 MB beyond the features whatever the device, and the full distance matrix is never
built.

:func:`evaluate_cuhk03_classic` is the single-gallery-shot CMC of the classic CUHK03 protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from advbench.api import AdvbenchError, Distance

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

# Distances (queries x gallery) handled per chunk when no chunk_size is given. The distances, the
# sorted values, the sort indices and the inverse permutation take 20 bytes per element, so 2**22
# elements keep the extra memory near 85 MB.
CHUNK_ELEMENTS = 2**22
_DISTANCES = ("cosine", "euclidean")

ArrayLike = Tensor | np.ndarray | Sequence[Any]


@dataclass(frozen=True)
class ReidScores:
    """Retrieval scores as fractions in [0, 1] (the leaderboard turns them into percent).

    ``cmc[k - 1]`` is rank-k accuracy; it has ``max_rank`` entries and saturates at 1 for ranks
    beyond the length of a query's list. ``num_valid_queries`` counts the queries that had at
    least one true match and were therefore averaged. ``query_ap`` is each query's AP in query
    order (NaN for a query without a true match), what bootstrap intervals resample.
    """

    mAP: float
    cmc: list[float]
    mINP: float
    num_valid_queries: int
    query_ap: np.ndarray | None = field(default=None, compare=False, repr=False)

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


def _check_distance(distance: str) -> None:
    if distance not in _DISTANCES:
        raise AdvbenchError(f"unknown distance {distance!r}: use 'cosine' or 'euclidean'")


def _bad_rows(x: Tensor) -> int:
    """Rows of ``x`` holding NaN or Inf, checked in blocks so no full-size mask is allocated."""
    rows = max(1, CHUNK_ELEMENTS // max(1, x[0].numel()))
    return sum(int((~torch.isfinite(b)).flatten(1).any(1).sum()) for b in x.split(rows))


def _features(x: ArrayLike, name: str, device: Any = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Checked 2-D features in ``dtype`` on ``device``: the input itself when it already is."""
    t = _tensor(x)
    if t.ndim != 2 or t.shape[0] == 0:
        raise AdvbenchError(f"{name} must be 2-D [N, D] with N > 0, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise AdvbenchError(f"{name} must be floating point, got {t.dtype}")
    t = t.to(device=device, dtype=dtype)  # checked after the cast: float64 beyond float32 is Inf
    bad = _bad_rows(t)
    if bad:
        raise AdvbenchError(f"{name}: {bad} of {t.shape[0]} feature rows contain NaN or Inf")
    return t


def _sq_norms(x: Tensor) -> Tensor:
    """Squared L2 norm of every row, in blocks (``(x * x).sum(1)`` would copy all of ``x``)."""
    rows = max(1, CHUNK_ELEMENTS // max(1, x.shape[1]))
    return torch.cat([(b * b).sum(1) for b in x.split(rows)])


@dataclass(frozen=True, eq=False)
class _PidGroups:
    """Gallery indices grouped by pid, so each query finds its same-pid items without a scan.

    Group ``u`` (pid ``values[u]``) is ``members[starts[u] : starts[u + 1]]``, ascending.
    """

    values: Tensor
    starts: Tensor
    members: Tensor

    @staticmethod
    def of(pids: Tensor) -> _PidGroups:
        members = torch.sort(pids, stable=True).indices
        values, counts = torch.unique_consecutive(pids[members], return_counts=True)
        starts = torch.zeros(values.numel() + 1, dtype=torch.int64, device=pids.device)
        starts[1:] = counts.cumsum(0)
        return _PidGroups(values, starts, members)

    def pairs(self, q_pids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Every (query row, gallery index) with the same pid, row-major; and the row counts."""
        u = torch.searchsorted(self.values, q_pids).clamp_(max=self.values.numel() - 1)
        start = self.starts[u]
        counts = (self.starts[u + 1] - start) * (self.values[u] == q_pids)
        rows = torch.repeat_interleave(torch.arange(q_pids.numel(), device=q_pids.device), counts)
        offset = torch.arange(rows.numel(), device=q_pids.device) - (counts.cumsum(0) - counts)[rows]
        return rows, self.members[start[rows] + offset], counts


@dataclass(frozen=True, eq=False, repr=False)
class GalleryIndex:
    """A gallery prepared once (:func:`prepare_gallery`) and ranked against many query sets.

    ``features`` are float32 ``[G, D]``, contiguous, on the device the evaluation runs on; they
    are the caller's tensor itself when it already was one (no copy: do not modify it in place
    afterwards). Instead of a normalised copy, cosine keeps ``inv_norms`` (1 / ||g||, applied to
    the similarities), euclidean keeps ``sq_norms`` (||g||^2). ``pids`` and ``camids`` are int64.
    Picklable; construct it with :func:`prepare_gallery`, which checks the features.
    """

    features: Tensor
    pids: Tensor
    camids: Tensor
    distance: Distance
    inv_norms: Tensor | None = None
    sq_norms: Tensor | None = None
    _groups: _PidGroups = field(init=False)

    def __post_init__(self) -> None:
        _check_distance(self.distance)
        f = self.features
        if f.ndim != 2 or f.dtype != torch.float32 or not f.is_contiguous():
            raise AdvbenchError(
                f"GalleryIndex.features must be contiguous float32 [G, D], got {f.dtype} {tuple(f.shape)}"
            )
        extra = {"cosine": self.inv_norms, "euclidean": self.sq_norms}[self.distance]
        other = self.sq_norms if self.distance == "cosine" else self.inv_norms
        for name, t, dtype in (
            ("pids", self.pids, torch.int64),
            ("camids", self.camids, torch.int64),
            ("the norm term", extra, torch.float32),
        ):
            if t is None or t.shape != (f.shape[0],) or t.dtype != dtype or t.device != f.device:
                got = None if t is None else f"{t.dtype} {tuple(t.shape)} on {t.device}"
                raise AdvbenchError(
                    f"GalleryIndex {name} must be {dtype} [{f.shape[0]}] on {f.device} for "
                    f"{self.distance} distance, got {got}"
                )
        if other is not None:
            raise AdvbenchError(f"GalleryIndex for {self.distance} distance holds the other distance's norms")
        object.__setattr__(self, "_groups", _PidGroups.of(self.pids))

    def __len__(self) -> int:
        return self.features.shape[0]

    def __repr__(self) -> str:
        g, d = self.features.shape
        return f"GalleryIndex({g} x {d}, {self.distance}, {self.features.device})"

    @property
    def device(self) -> torch.device:
        return self.features.device

    def _distances(self, q: Tensor, out: Tensor | None = None) -> Tensor:
        """Float32 distances ``[len(q), G]`` of checked query features (a chunk), into ``out``.

        Cosine: the normalised queries times the raw gallery (one matmul), then ``1 - s / ||g||``
        (two passes). Euclidean: ``|q|^2 + |g|^2`` (one pass), ``- 2 q.g`` accumulated by the
        matmul, clamped at 0.
        """
        q = q.to(device=self.device, dtype=torch.float32)
        n, num_g = q.shape[0], len(self)
        out = torch.empty(n, num_g, dtype=torch.float32, device=self.device) if out is None else out
        if self.distance == "cosine":
            assert self.inv_norms is not None
            qn = q / torch.linalg.vector_norm(q, dim=1, keepdim=True).clamp_(min=1e-12)
            torch.mm(qn, self.features.T, out=out)
            return out.mul_(self.inv_norms.neg()).add_(1.0)
        assert self.sq_norms is not None
        torch.add(_sq_norms(q)[:, None], self.sq_norms[None, :], out=out)
        return out.addmm_(q, self.features.T, alpha=-2.0).clamp_(min=0.0)


def prepare_gallery(
    g_feats: ArrayLike,
    g_pids: ArrayLike,
    g_camids: ArrayLike,
    distance: Distance = "cosine",
    device: Any = None,
) -> GalleryIndex:
    """Check and prepare a gallery once for :func:`evaluate_queries` (float32, norms precomputed).

    ``device`` defaults to the features' own. Float32 contiguous features on that device are
    used as they are; anything else is converted once (the only copy). Raises
    :class:`AdvbenchError` on NaN/Inf feature rows, label shapes or an unknown distance.
    """
    _check_distance(distance)
    g = _features(g_feats, "gallery features", device).contiguous()
    pids = _labels(g_pids, "g_pids", g.shape[0], g.device)
    camids = _labels(g_camids, "g_camids", g.shape[0], g.device)
    if distance == "cosine":
        inv = torch.linalg.vector_norm(g, dim=1).clamp_(min=1e-12).reciprocal_()
        return GalleryIndex(g, pids, camids, distance, inv_norms=inv)
    return GalleryIndex(g, pids, camids, distance, sq_norms=_sq_norms(g))


@dataclass
class _Accumulator:
    """Sums over valid queries, merged chunk by chunk."""

    max_rank: int
    ap_sum: float = 0.0
    inp_sum: float = 0.0
    valid: int = 0
    cmc_hist: Tensor | None = None  # counts of first-match ranks 1..max_rank (+1 bin for beyond)
    query_ap: list[Tensor] = field(default_factory=list)  # per chunk, NaN where no true match

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
            query_ap=torch.cat(self.query_ap).cpu().numpy() if self.query_ap else None,
        )


class _Ranker:
    """Sorts chunks of distances into reused buffers (fresh multi-MB tensors per chunk would
    page-fault on every chunk) and scores them into an :class:`_Accumulator`."""

    def __init__(self, rows: int, groups: _PidGroups, g_camids: Tensor, max_rank: int) -> None:
        num_g, dev = g_camids.numel(), g_camids.device
        self.groups, self.g_camids = groups, g_camids
        self.acc = _Accumulator(max_rank)
        self.rows = rows
        self.order = torch.empty(rows, num_g, dtype=torch.int64, device=dev)
        self.rank = torch.empty(rows, num_g, dtype=torch.int32, device=dev)
        self.positions = torch.arange(num_g, dtype=torch.int32, device=dev)
        self.values: Tensor | None = None

    def score(self, dist: Tensor, q_pids: Tensor, q_camids: Tensor, what: str) -> tuple[Tensor, Tensor]:
        """Add one chunk's AP, INP and first-match ranks; returns its ``order`` and valid rows.

        ``order`` is the stable argsort of each row. NaN sorts last and -Inf first, so the first
        and last sorted values of a row tell whether it holds any NaN or Inf.
        """
        n, num_g = dist.shape
        if self.values is None or self.values.dtype != dist.dtype:
            self.values = torch.empty(self.rows, num_g, dtype=dist.dtype, device=dist.device)
        values, order, rank = self.values[:n], self.order[:n], self.rank[:n]
        torch.sort(dist, dim=1, stable=True, out=(values, order))
        bad = ~(torch.isfinite(values[:, 0]) & torch.isfinite(values[:, -1]))
        if bool(bad.any()):
            raise AdvbenchError(f"{what}: {int(bad.sum())} of {n} rows contain NaN or Inf")
        rank.scatter_(1, order, self.positions.expand(n, num_g))  # rank[i, order[i, k]] = k
        # Only same-pid items matter: junk (same camera) is skipped, the others are true matches.
        rows, cols, counts = self.groups.pairs(q_pids)
        ranks = rank[rows, cols].to(torch.int64)
        junk = self.g_camids[cols] == q_camids[rows]
        by_rank = torch.argsort(rows * num_g + ranks)  # rows stay grouped, ranked within each row
        ranks, junk = ranks[by_rank], junk[by_rank]
        starts = counts.cumsum(0) - counts
        junk_before = junk.cumsum(0) - junk.to(torch.int64)
        junk_before -= junk_before[starts[rows]].clone()  # junk ranked before, in the same row
        hit = ~junk
        hit_rows, kept_rank = rows[hit], (ranks + 1 - junk_before)[hit]
        self._add(hit_rows, kept_rank, n)
        return order, torch.bincount(hit_rows, minlength=n) > 0

    def _add(self, hit_rows: Tensor, kept_rank: Tensor, n: int) -> None:
        """AP, INP and first-match rank of each row from its true matches' 1-based kept ranks."""
        counts = torch.bincount(hit_rows, minlength=n)
        valid = counts > 0
        per_query = torch.full((n,), float("nan"), dtype=torch.float64, device=hit_rows.device)
        self.acc.query_ap.append(per_query)
        if not bool(valid.any()):
            return
        starts = counts.cumsum(0) - counts
        # k-th hit of its row (1-based): position in the row-major hit list minus the row's start.
        k = torch.arange(hit_rows.numel(), device=hit_rows.device) - starts[hit_rows] + 1
        precision = k.to(torch.float64) / kept_rank.to(torch.float64)
        ap = torch.zeros(n, dtype=torch.float64, device=hit_rows.device).index_add_(0, hit_rows, precision)
        ap = ap[valid] / counts[valid].to(torch.float64)
        per_query[valid] = ap
        first = kept_rank[starts[valid]]
        last = kept_rank[starts[valid] + counts[valid] - 1]
        inp = counts[valid].to(torch.float64) / last.to(torch.float64)
        self.acc.ap_sum += float(ap.sum())
        self.acc.inp_sum += float(inp.sum())
        self.acc.valid += int(valid.sum())
        self.acc.add_ranks(first)


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
    elif dist.dtype in (torch.float16, torch.bfloat16):
        dist = dist.to(torch.float32)  # exact, and sorted natively everywhere
    dev = dist.device
    return (
        dist,
        _labels(q_pids, "q_pids", num_q, dev),
        _labels(g_pids, "g_pids", num_g, dev),
        _labels(q_camids, "q_camids", num_q, dev),
        _labels(g_camids, "g_camids", num_g, dev),
    )


def _queries(
    q_feats: ArrayLike, gallery: GalleryIndex, q_pids: ArrayLike | None, q_camids: ArrayLike | None
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    if not isinstance(gallery, GalleryIndex):
        raise AdvbenchError(
            f"gallery must be a GalleryIndex (see prepare_gallery), got {type(gallery).__name__}"
        )
    q = _tensor(q_feats)
    # cast chunk by chunk, so checked in its own dtype here (a cast overflow shows as Inf distances)
    qf = _features(q, "query features", q.device, q.dtype)
    if qf.shape[1] != gallery.features.shape[1]:
        raise AdvbenchError(
            f"feature dimensions differ: query {qf.shape[1]} vs gallery {gallery.features.shape[1]}"
        )
    n, dev = qf.shape[0], gallery.device
    qp = None if q_pids is None else _labels(q_pids, "q_pids", n, dev)
    qc = None if q_camids is None else _labels(q_camids, "q_camids", n, dev)
    return qf, qp, qc


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


def gallery_distances(q_feats: ArrayLike, gallery: GalleryIndex, chunk_size: int | None = None) -> Tensor:
    """The float32 distance matrix ``[Q, G]`` that :func:`evaluate_queries` ranks, built whole.

    Cosine: 1 - cos(q, g), in [0, 2]. Euclidean: the **squared** distance clamped at 0, as
    torchreid's ``euclidean_squared_distance``. For protocols that need the matrix
    (:func:`evaluate_cuhk03_classic`): computed in the same chunks as :func:`evaluate_queries`,
    so :func:`evaluate` of it gives the same scores.
    """
    qf, _, _ = _queries(q_feats, gallery, None, None)
    out = torch.empty(qf.shape[0], len(gallery), dtype=torch.float32, device=gallery.device)
    chunk = _check_chunk(chunk_size, len(gallery))
    for s in range(0, qf.shape[0], chunk):
        gallery._distances(qf[s : s + chunk], out=out[s : s + chunk])
    return out


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


def distance_matrix(a: ArrayLike, b: ArrayLike, distance: Distance = "cosine") -> Tensor:
    """Float64 distances ``[len(a), len(b)]`` between feature rows, on the device of ``a``.

    ``cosine``: 1 - cos(a, b) on L2-normalised rows, in [0, 2]. ``euclidean``: **squared**
    Euclidean distance (as torchreid's ``euclidean_squared_distance``); the ranking is the same as
    with the plain distance. A float64 reference for small problems: the evaluation path uses
    float32 (:func:`gallery_distances` gives its matrix).
    """
    _check_distance(distance)
    qa = _features(a, "a", dtype=torch.float64)
    gb = _features(b, "b", qa.device, torch.float64)
    if qa.shape[1] != gb.shape[1]:
        raise AdvbenchError(f"feature dimensions differ: {qa.shape[1]} vs {gb.shape[1]}")
    if distance == "cosine":
        an = torch.nn.functional.normalize(qa, dim=1)
        bn = torch.nn.functional.normalize(gb, dim=1)
        return (an @ bn.T).neg_().add_(1.0)
    d = (qa @ gb.T).mul_(-2.0).add_((qa * qa).sum(1, keepdim=True)).add_((gb * gb).sum(1)[None, :])
    return d.clamp_(min=0.0)


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
