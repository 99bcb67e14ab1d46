"""k-reciprocal re-ranking (Zhong et al., CVPR 2017, "Re-ranking person re-identification with
k-reciprocal encoding"), in torch, as a ranking defence.

From the paper, for every item p of the query and gallery images together:

* ``N(p, k)``: the k nearest neighbours of p, p itself included as the first of ``k + 1``;
* ``R(p, k) = {g in N(p, k) : p in N(g, k)}``, the k-reciprocal set;
* ``R*(p, k1)``: ``R(p, k1)`` united with ``R(q, round(k1 / 2))`` of each ``q`` in it whose set
  shares more than 2/3 of its members with ``R(p, k1)`` (half rounds to even, as numpy does);
* ``V[p, g] = exp(-d(p, g))`` for g in ``R*(p, k1)``, zero elsewhere, normalised to sum 1;
* local query expansion: ``V[p]`` becomes the mean of ``V[g]`` over the ``k2`` nearest ``g``
  (p included);
* Jaccard distance ``1 - sum(min(V[p], V[g])) / sum(max(V[p], V[g]))``, and the final distance
  ``(1 - lambda) * Jaccard + lambda * d``.

Convention of the common re-ID toolkits (the authors' code, torchreid, fast-reid): ``d`` is the
``(Q+G) x (Q+G)`` matrix of the given distances with each column divided by its maximum, used
transposed, i.e. row p divided by the largest distance from p (the matrix is symmetric). The
toolkits square Euclidean distances before that; this function uses the distances as given, so pass
squared Euclidean distances to match them. Neighbours are ranked by a stable sort (ties by index).

Memory is a few dense ``(Q+G) x (Q+G)`` float and bool matrices (as in the toolkits); only the first
``max(k1 + 1, k2)`` neighbours of each item are kept. The Jaccard sums touch only the non-zeros of
``V``: through an inverted index on a CPU, through gathered blocks on CUDA (deterministic there).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from advbench.api import AdvbenchError, DefenceSpec, RankingDefence

# Elements of the [chunk, nonzeros, Q+G] buffer of the Jaccard step and of each sorted block of rows.
JACCARD_CHUNK_ELEMENTS = 2**24
SORT_CHUNK_ELEMENTS = 2**24


def _full_distances(q_g: Tensor, q_q: Tensor, g_g: Tensor) -> Tensor:
    """The ``(Q+G) x (Q+G)`` distances, each row divided by its maximum (the toolkits' normalisation)."""
    dtype = q_g.dtype if q_g.dtype in (torch.float32, torch.float64) else torch.float32
    top = torch.cat([q_q, q_g], dim=1)
    bottom = torch.cat([q_g.T, g_g], dim=1)
    full = torch.cat([top, bottom], dim=0).to(dtype)
    col_max = full.max(dim=0).values.clamp_min(torch.finfo(dtype).tiny)
    return (full / col_max).T.contiguous()


def _nearest(dist: Tensor, k: int) -> Tensor:
    """The ``k`` nearest of each row, nearest first, ties by index (a stable sort of row blocks).

    Only ``k`` columns are kept: the full ``(Q+G) x (Q+G)`` order would take 8 bytes per pair.
    """
    n = dist.shape[0]
    out = torch.empty(n, k, dtype=torch.long, device=dist.device)
    rows = max(1, SORT_CHUNK_ELEMENTS // n)
    for start in range(0, n, rows):
        out[start : start + rows] = torch.sort(dist[start : start + rows], dim=1, stable=True).indices[:, :k]
    return out


def _members(rank: Tensor, k: int) -> Tensor:
    """Boolean ``[n, n]``: ``[p, g]`` is True when g is among the ``k + 1`` nearest of p."""
    n = rank.shape[0]
    out = torch.zeros(n, n, dtype=torch.bool, device=rank.device)
    return out.scatter_(1, rank[:, : k + 1], True)


def _expanded_sets(rank: Tensor, k1: int) -> Tensor:
    """Boolean ``[n, n]`` membership of ``R*(p, k1)``: reciprocal sets plus the 2/3-overlap expansion."""
    n = rank.shape[0]
    half = round(k1 / 2)
    near = _members(rank, k1)
    recip = near & near.T  # R(p, k1)
    near_half = _members(rank, half)
    recip_half = near_half & near_half.T  # R(q, k1/2)
    forward = rank[:, : k1 + 1]  # candidates q of each p: N(p, k1) (R(p, k1) is inside it)
    half_list = rank[:, : half + 1]  # N(q, k1/2), superset of R(q, k1/2)
    half_in = recip_half.gather(1, half_list)  # [n, half+1]: is the listed item in R(q, k1/2)
    members = half_list[forward]  # [n, k1+1, half+1]: N(q, k1/2) of each candidate q of p
    member_in = half_in[forward]  # ... and whether it is in R(q, k1/2)
    in_p = recip.gather(1, members.reshape(n, -1)).view_as(members)  # ... and in R(p, k1)
    overlap = (member_in & in_p).sum(dim=2)
    size = member_in.sum(dim=2)
    take = recip.gather(1, forward) & (3 * overlap > 2 * size)  # q in R(p, k1), > 2/3 shared
    add = take[:, :, None] & member_in
    self_index = torch.arange(n, device=rank.device)[:, None, None].expand_as(members)
    index = torch.where(add, members, self_index).reshape(n, -1)  # p is always in R*(p): harmless
    return recip.clone().scatter_(1, index, True)


def _shared_dense(v: Tensor, rows: int) -> Tensor:
    """``sum(min(v[q], v[g]))`` for the first ``rows`` rows q and every row g, over each q's support.

    Gathers ``[chunk, support, Q+G]`` blocks: plain reductions, deterministic on every device.
    """
    n = v.shape[0]
    out = torch.empty(rows, n, dtype=v.dtype, device=v.device)
    vt = v.T.contiguous()
    width = max(int((v[:rows] != 0).sum(dim=1).max()) if rows else 1, 1)
    chunk = max(1, JACCARD_CHUNK_ELEMENTS // (width * n))
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        values, cols = v[start:stop].topk(width, dim=1)  # the support, padded with zeros
        out[start:stop] = torch.minimum(values[:, :, None], vt[cols]).sum(dim=1)
    return out


def _shared_sparse(v: Tensor, rows: int) -> Tensor:
    """The same sums through an inverted index: each non-zero ``v[q, j]`` meets only the non-zeros
    of column j (the toolkits' approach). Much less work on a CPU, where the accumulation is serial
    and so deterministic; on CUDA it would be atomic, hence :func:`_shared_dense` there.
    """
    n = v.shape[0]
    g_rows, g_cols = v.nonzero(as_tuple=True)
    order = torch.argsort(g_cols, stable=True)
    col_rows, col_vals = g_rows[order], v[g_rows, g_cols][order]
    counts = torch.bincount(g_cols, minlength=n)
    starts = counts.cumsum(0) - counts
    q_rows, q_cols = v[:rows].nonzero(as_tuple=True)
    q_vals, pairs = v[q_rows, q_cols], counts[q_cols]
    ends = pairs.cumsum(0)
    total = int(ends[-1]) if len(ends) else 0
    marks = torch.tensor(range(JACCARD_CHUNK_ELEMENTS, total, JACCARD_CHUNK_ELEMENTS), dtype=ends.dtype)
    cuts = torch.searchsorted(ends, marks.to(ends.device))  # chunks of about that many pairs
    edges = sorted({0, *cuts.tolist(), len(pairs)})
    out = torch.zeros(rows, n, dtype=v.dtype, device=v.device)
    for lo, hi in itertools.pairwise(edges):
        entry = torch.repeat_interleave(torch.arange(lo, hi, device=v.device), pairs[lo:hi])
        offset = torch.arange(len(entry), device=v.device) - (
            ends[entry] - pairs[entry] - (ends[lo] - pairs[lo])
        )
        source = starts[q_cols[entry]] + offset
        shared = torch.minimum(q_vals[entry], col_vals[source])
        out.index_put_((q_rows[entry], col_rows[source]), shared, accumulate=True)
    return out


def _jaccard(v: Tensor, rows: int, sparse: bool | None = None) -> Tensor:
    """``1 - sum(min) / sum(max)`` between each of the first ``rows`` rows of ``v`` and every row.

    ``sparse`` (default: on a CPU) picks the inverted-index sums over the dense gathered ones.
    """
    sparse = v.device.type == "cpu" if sparse is None else sparse
    shared = (_shared_sparse if sparse else _shared_dense)(v, rows)
    union = v[:rows].sum(dim=1, keepdim=True) + v.sum(dim=1)[None, :] - shared  # sum(max)
    return 1.0 - shared / union.clamp_min(torch.finfo(v.dtype).tiny)


def _check(q_g: Tensor, q_q: Tensor, g_g: Tensor, k1: int, k2: int, lambda_value: float) -> None:
    nq, ng = q_g.shape if q_g.dim() == 2 else (-1, -1)
    if q_g.dim() != 2 or tuple(q_q.shape) != (nq, nq) or tuple(g_g.shape) != (ng, ng):
        raise AdvbenchError(
            f"re-ranking needs q_g [Q, G], q_q [Q, Q], g_g [G, G]; got {tuple(q_g.shape)}, "
            f"{tuple(q_q.shape)}, {tuple(g_g.shape)}"
        )
    n = nq + ng
    if not 1 <= k1 < n or not 1 <= k2 <= n:
        raise AdvbenchError(f"re-ranking needs 1 <= k1 < Q+G and 1 <= k2 <= Q+G = {n}; got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise AdvbenchError(f"re-ranking needs lambda_value in [0, 1], got {lambda_value}")
    if not all(bool(torch.isfinite(d).all()) for d in (q_g, q_q, g_g)):
        raise AdvbenchError("re-ranking got NaN or infinite distances; check the victim's features")


def k_reciprocal_rerank(
    q_g: Tensor, q_q: Tensor, g_g: Tensor, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> Tensor:
    """Re-ranked query-gallery distances ``[Q, G]`` (Zhong et al., CVPR 2017; see the module docstring).

    Works in the dtype of ``q_g`` (float32 or float64; others become float32) on its device.
    """
    _check(q_g, q_q, g_g, k1, k2, lambda_value)
    nq = q_g.shape[0]
    dist = _full_distances(q_g, q_q.to(q_g), g_g.to(q_g))
    rank = _nearest(dist, max(k1 + 1, k2))
    v = torch.exp(-dist).masked_fill_(~_expanded_sets(rank, k1), 0.0)
    v /= v.sum(dim=1, keepdim=True)
    if k2 > 1:  # in place, one [Q+G, Q+G] buffer at a time
        expanded = v[rank[:, 0]]
        for t in range(1, k2):
            expanded += v[rank[:, t]]
        v = expanded.div_(k2)
    jaccard = _jaccard(v, nq)
    final = (1.0 - lambda_value) * jaccard + lambda_value * dist[:nq]
    return final[:, nq:]


class KReciprocalRerank(RankingDefence):
    """k-reciprocal re-ranking of the query-gallery distances with fixed ``k1``, ``k2``, ``lambda_value``."""

    def __init__(self, k1: int = 20, k2: int = 6, lambda_value: float = 0.3) -> None:
        self.k1, self.k2, self.lambda_value = int(k1), int(k2), float(lambda_value)

    def rerank(self, q_g: Tensor, q_q: Tensor, g_g: Tensor) -> Tensor:
        return k_reciprocal_rerank(q_g, q_q, g_g, self.k1, self.k2, self.lambda_value)


SPEC = DefenceSpec(
    name="rerank",
    description="k-reciprocal re-ranking of the query-gallery distances (Zhong et al., CVPR 2017)",
    build=KReciprocalRerank,
    defaults={"k1": 20, "k2": 6, "lambda_value": 0.3},
)
