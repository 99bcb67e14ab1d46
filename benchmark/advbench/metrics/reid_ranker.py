"""The scoring core of the Market-1501 protocol: rank chunks of distances, accumulate mAP, CMC, mINP.

:class:`_Ranker` stable-sorts each chunk of query rows into reused buffers. The sort is the only
dense step: the scores depend only on where each query's same-identity items land, so those few
items (:class:`_PidGroups`) are looked up in the inverse permutation, junk (same identity and
camera) is skipped, and AP, INP and the first-match rank follow sparsely. :class:`_Accumulator`
sums them over chunks into :class:`ReidScores`. The protocol itself is described in
:mod:`advbench.metrics.reid`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from advbench.api import AdvbenchError

__all__ = ["ReidScores"]


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
