"""advbench.metrics.ranking: target scores against brute-force references on small random problems."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import advbench.metrics.ranking as ranking
from advbench.api import AdvbenchError
from advbench.metrics.ranking import (
    TargetScores,
    candidate_ranks,
    draw_targets,
    normalised_ranks,
    scores_from_ranks,
    target_intervals,
    target_scores,
)

SEEDS = range(6)


# ------------------------------------------------------------------------------ brute-force references
def reference_ranks(distmat: torch.Tensor, candidates: torch.Tensor, ties: str = "after") -> list[list[int]]:
    """Sort each query's gallery by distance with the candidate placed last (or first) among its ties."""
    d = distmat.tolist()
    out = []
    for i, row in enumerate(candidates.tolist()):
        ranks = []
        for c in row:
            if ties == "after":
                order = sorted(range(len(d[i])), key=lambda j, c=c, i=i: (d[i][j], j == c))
            else:
                order = sorted(range(len(d[i])), key=lambda j, c=c, i=i: (d[i][j], j != c))
            ranks.append(order.index(c))
        out.append(ranks)
    return out


def reference_scores(distmat: torch.Tensor, candidates: torch.Tensor, ties: str = "after") -> dict:
    g = distmat.shape[1]
    ranks = reference_ranks(distmat, candidates, ties)
    per_rank, shares = [], {1: [], 5: [], 10: []}
    for row in ranks:
        per_rank.append(sum((r / (g - 1) if g > 1 else 0.0) for r in row) / len(row))
        for t in shares:
            shares[t].append(sum(1 for r in row if r < t) / len(row))
    pairs = [r for row in ranks for r in row]
    return {
        "query_rank": per_rank,
        "mean_rank": sum((r / (g - 1) if g > 1 else 0.0) for r in pairs) / len(pairs),
        **{f"query_top{t}": v for t, v in shares.items()},
        **{f"top{t}": 100.0 * sum(1 for r in pairs if r < t) / len(pairs) for t in shares},
    }


def random_problem(seed: int, tied: bool) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    q = int(torch.randint(1, 7, (1,), generator=gen))
    g = int(torch.randint(1, 15, (1,), generator=gen))
    k = int(torch.randint(1, g + 1, (1,), generator=gen))
    if tied:  # few distinct values, so many ties; some infinities
        d = torch.randint(0, 3, (q, g), generator=gen).double()
        d[torch.rand(q, g, generator=gen) < 0.1] = float("inf")
        d[torch.rand(q, g, generator=gen) < 0.1] = float("-inf")
    else:
        d = torch.rand(q, g, generator=gen)
    cand = torch.stack([torch.randperm(g, generator=gen)[:k] for _ in range(q)])
    return d, cand


def reference_bootstrap(values: list[np.ndarray], resamples: int, seed: int, level: float = 0.95):
    """Slow paired bootstrap: the same drawn queries for every quantity, plain means, percentiles."""
    rng = np.random.default_rng(seed)
    n = values[0].shape[0]
    draws = rng.integers(0, n, size=(resamples, n))
    out = []
    for v in values:
        means = [float(np.mean([v[j] for j in draws[b]])) for b in range(resamples)]
        tail = 50.0 * (1 - level)
        lo, hi = np.percentile(means, [tail, 100 - tail])
        out.append((float(lo), float(hi)))
    return out


# ---------------------------------------------------------------------------------- candidate_ranks
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("ties", ["after", "before"])
def test_candidate_ranks_match_reference(seed: int, tied: bool, ties: str) -> None:
    d, cand = random_problem(seed, tied)
    got = candidate_ranks(d, cand, ties=ties)
    assert got.dtype == torch.long and got.shape == cand.shape
    assert got.tolist() == reference_ranks(d, cand, ties)


def test_default_ties_count_against_the_candidate() -> None:
    d = torch.tensor([[1.0, 1.0, 1.0, 0.5, 2.0]])
    cand = torch.tensor([[0, 2, 4]])
    assert candidate_ranks(d, cand).tolist() == [[3, 3, 4]]  # after the 0.5 and both other ties
    assert candidate_ranks(d, cand, ties="before").tolist() == [[1, 1, 4]]  # advrank's strict count
    collapsed = torch.zeros(1, 5)  # an equidistant query: no credit to a targeted attack
    assert candidate_ranks(collapsed, cand).tolist() == [[4, 4, 4]]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_candidate_ranks_dtypes(dtype: torch.dtype) -> None:
    d, cand = random_problem(3, tied=True)
    assert candidate_ranks(d.to(dtype), cand).tolist() == reference_ranks(d, cand)


def test_candidate_ranks_ignore_gallery_order() -> None:
    for seed in SEEDS:
        d, cand = random_problem(seed, tied=True)
        perm = torch.randperm(d.shape[1], generator=torch.Generator().manual_seed(seed))
        inverse = torch.argsort(perm)
        assert torch.equal(candidate_ranks(d[:, perm], inverse[cand]), candidate_ranks(d, cand))


def test_k1_and_g1() -> None:
    d = torch.tensor([[0.3, 0.1, 0.2], [0.0, 0.5, 0.4]])
    assert candidate_ranks(d, torch.tensor([[0], [1]])).tolist() == [[2], [2]]
    one = torch.tensor([[0.7], [float("inf")], [-1.0]])
    ranks = candidate_ranks(one, torch.zeros(3, 1, dtype=torch.long))
    assert ranks.tolist() == [[0], [0], [0]]
    assert normalised_ranks(ranks, 1).tolist() == [[0.0], [0.0], [0.0]]
    s = target_scores(one, torch.zeros(3, 1, dtype=torch.long))
    assert (s.mean_rank, s.top1, s.top5, s.top10) == (0.0, 100.0, 100.0, 100.0)


def test_extremes_normalise_to_zero_and_one() -> None:
    d = torch.tensor([[float("-inf"), 0.2, 0.3, 0.9], [0.5, 0.1, float("inf"), 0.4]])
    cand = torch.tensor([[0, 3], [1, 2]])
    norm = normalised_ranks(candidate_ranks(d, cand), 4)
    assert norm.dtype == torch.float64
    assert norm.tolist() == [[0.0, 1.0], [0.0, 1.0]]


def test_candidate_ranks_accept_candidates_of_other_integer_types() -> None:
    d, cand = random_problem(1, tied=False)
    assert candidate_ranks(d, cand.int()).tolist() == reference_ranks(d, cand)


@pytest.mark.parametrize(
    ("distmat", "candidates", "message"),
    [
        (torch.rand(3), torch.zeros(3, 1, dtype=torch.long), "2-D"),
        (torch.rand(3, 4), torch.zeros(2, 1, dtype=torch.long), "one row per query"),
        (torch.rand(3, 4), torch.zeros(3, dtype=torch.long), "2-D"),
        (torch.rand(3, 4), torch.zeros(3, 0, dtype=torch.long), "k=0"),
        (torch.rand(3, 4), torch.full((3, 1), 4), "out of range"),
        (torch.rand(3, 4), torch.full((3, 1), -1), "out of range"),
        (torch.rand(3, 4), torch.zeros(3, 1), "integer"),
        (torch.randint(0, 5, (3, 4)), torch.zeros(3, 1, dtype=torch.long), "floating point"),
        (torch.tensor([[0.1, float("nan")]]), torch.zeros(1, 1, dtype=torch.long), "NaN"),
    ],
)
def test_candidate_ranks_errors(distmat: torch.Tensor, candidates: torch.Tensor, message: str) -> None:
    with pytest.raises(AdvbenchError, match=message) as err:
        candidate_ranks(distmat, candidates)
    assert "\n" not in str(err.value)


def test_bad_tie_rule() -> None:
    with pytest.raises(AdvbenchError, match="ties"):
        candidate_ranks(torch.rand(2, 3), torch.zeros(2, 1, dtype=torch.long), ties="random")  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_candidate_ranks_on_cuda() -> None:
    for seed in SEEDS:
        for tied in (False, True):
            d, cand = random_problem(seed, tied)
            got = candidate_ranks(d.cuda(), cand)  # candidates may stay on the CPU
            assert got.device.type == "cuda"
            assert got.cpu().tolist() == reference_ranks(d, cand)
            assert candidate_ranks(d.cuda(), cand.cuda(), ties="before").cpu().tolist() == reference_ranks(
                d, cand, "before"
            )
            s = target_scores(d.cuda(), cand.cuda())
            assert np.allclose(s.query_rank, reference_scores(d, cand)["query_rank"], atol=1e-12)


# --------------------------------------------------------------------------------- normalised_ranks
def test_normalised_ranks_values_and_errors() -> None:
    ranks = torch.tensor([[0, 2], [4, 1]])
    assert normalised_ranks(ranks, 5).tolist() == [[0.0, 0.5], [1.0, 0.25]]
    for bad in (torch.tensor([5]), torch.tensor([-1])):
        with pytest.raises(AdvbenchError, match="outside"):
            normalised_ranks(bad, 5)
    with pytest.raises(AdvbenchError, match="n_gallery"):
        normalised_ranks(torch.tensor([0]), 0)


# ------------------------------------------------------------------------------------ target_scores
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("tied", [False, True])
def test_target_scores_match_reference(seed: int, tied: bool) -> None:
    d, cand = random_problem(seed, tied)
    for ties in ("after", "before"):
        got = target_scores(d, cand, ties=ties)
        ref = reference_scores(d, cand, ties)
        assert got.n_queries == d.shape[0] and got.k == cand.shape[1] and got.n_gallery == d.shape[1]
        for name in ("mean_rank", "top1", "top5", "top10"):
            assert getattr(got, name) == pytest.approx(ref[name], abs=1e-12)
        for name in ("query_rank", "query_top1", "query_top5", "query_top10"):
            arr = getattr(got, name)
            assert arr.dtype == np.float64 and arr.shape == (d.shape[0],) and not arr.flags.writeable
            np.testing.assert_allclose(arr, ref[name], atol=1e-12)


def test_topk_shares_on_a_constructed_case() -> None:
    g = 20
    d = torch.arange(g, dtype=torch.float64).repeat(2, 1)  # item j ranks j for both queries
    cand = torch.tensor([[0, 4, 9, 10], [1, 5, 19, 3]])
    s = target_scores(d, cand)
    assert (s.top1, s.top5, s.top10) == (12.5, 50.0, 75.0)
    assert s.query_top1.tolist() == [0.25, 0.0]
    assert s.query_top5.tolist() == [0.5, 0.5]
    assert s.query_top10.tolist() == [0.75, 0.75]
    assert s.query_rank.tolist() == pytest.approx([23 / 4 / 19, 28 / 4 / 19])
    assert s.mean_rank == pytest.approx(51 / 8 / 19)


def test_target_scores_is_frozen() -> None:
    s = target_scores(torch.rand(2, 4), torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(AttributeError):
        s.mean_rank = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        s.query_rank[0] = 1.0


def test_target_scores_need_a_query() -> None:
    with pytest.raises(AdvbenchError, match="Q=0"):
        target_scores(torch.rand(0, 4), torch.zeros(0, 1, dtype=torch.long))


# --------------------------------------------------------------------------------- target_intervals
def scores_pair(seed: int, q: int = 12, g: int = 30, k: int = 3) -> tuple[TargetScores, TargetScores]:
    gen = torch.Generator().manual_seed(seed)
    cand = torch.stack([torch.randperm(g, generator=gen)[:k] for _ in range(q)])
    clean = torch.rand(q, g, generator=gen, dtype=torch.float64)
    adv = clean.clone()
    adv.scatter_(1, cand[:, :1], 0.05 * torch.rand(q, 1, generator=gen, dtype=torch.float64))  # promoted
    return target_scores(clean, cand), target_scores(adv, cand)


NAMES = [f"{p}target_{s}" for s in ("rank", "top1", "top5", "top10") for p in ("clean_", "adv_")] + [
    "target_rank_change",
    "target_top1_change",
    "target_top5_change",
    "target_top10_change",
]


def test_identical_scores_give_zero_change() -> None:
    clean, _ = scores_pair(0)
    out = target_intervals(clean, clean, resamples=200, seed=3)
    assert sorted(out) == sorted(NAMES)
    for name in ("target_rank_change", "target_top1_change", "target_top5_change", "target_top10_change"):
        assert out[name] == (0.0, 0.0)
    for s in ("rank", "top1", "top5", "top10"):
        assert out[f"clean_target_{s}"] == out[f"adv_target_{s}"]


@pytest.mark.parametrize("seed", range(3))
def test_intervals_match_slow_paired_bootstrap(seed: int) -> None:
    clean, adv = scores_pair(seed)
    resamples = 300
    got = target_intervals(clean, adv, resamples=resamples, seed=seed + 10)
    values, names = [], []
    for s in ("rank", "top1", "top5", "top10"):
        c = clean.query_rank if s == "rank" else 100.0 * getattr(clean, f"query_{s}")
        a = adv.query_rank if s == "rank" else 100.0 * getattr(adv, f"query_{s}")
        values += [c, a, a - c]
        names += [f"clean_target_{s}", f"adv_target_{s}"]
        names.append("target_rank_change" if s == "rank" else f"target_{s}_change")
    for name, ref in zip(names, reference_bootstrap(values, resamples, seed + 10)):
        assert got[name] == pytest.approx(ref, abs=1e-9), name
    assert got["target_rank_change"][1] < 0  # the attack promoted one candidate of every query


def test_intervals_are_seeded() -> None:
    clean, adv = scores_pair(5)
    a = target_intervals(clean, adv, resamples=200, seed=1)
    assert a == target_intervals(clean, adv, resamples=200, seed=1)
    assert a != target_intervals(clean, adv, resamples=200, seed=2)
    lo, hi = a["clean_target_rank"]
    assert lo <= clean.mean_rank <= hi


def test_intervals_reject_mismatched_scores() -> None:
    clean, _ = scores_pair(0, q=12)
    other, _ = scores_pair(0, q=11)
    with pytest.raises(AdvbenchError, match="differ"):
        target_intervals(clean, other)


# ------------------------------------------------------------------------------------- draw_targets
def reference_draw(query_pids: list[int], gallery_pids: list[int], k: int, seed: int) -> list[list[int]]:
    """The documented rule, one query and one gallery item at a time."""
    g = len(gallery_pids)
    words = np.random.PCG64(seed).random_raw(len(query_pids) * g).tolist()
    rows = []
    for i, pid in enumerate(query_pids):
        eligible = [j for j in range(g) if gallery_pids[j] != pid]
        eligible.sort(key=lambda j, i=i: (words[i * g + j] >> 1, j))
        rows.append(sorted(eligible[:k]))
    return rows


def random_pids(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 4, size=7)), torch.from_numpy(rng.integers(-1, 6, size=25))


@pytest.mark.parametrize("seed", SEEDS)
def test_draw_targets_follow_the_rule(seed: int) -> None:
    qp, gp = random_pids(seed)
    for k in (1, 4):
        got = draw_targets(qp, gp, k, seed)
        assert got.dtype == torch.long and got.shape == (7, k) and got.device.type == "cpu"
        assert got.tolist() == reference_draw(qp.tolist(), gp.tolist(), k, seed)
        for i, row in enumerate(got.tolist()):
            assert len(set(row)) == k
            assert all(int(gp[j]) != int(qp[i]) for j in row)


def test_draw_targets_deterministic_and_seeded() -> None:
    qp, gp = random_pids(0)
    assert torch.equal(draw_targets(qp, gp, 3, 7), draw_targets(qp.numpy(), gp.numpy(), 3, 7))
    assert not torch.equal(draw_targets(qp, gp, 3, 7), draw_targets(qp, gp, 3, 8))


def test_draw_targets_rows_do_not_depend_on_later_queries_or_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    qp, gp = random_pids(2)
    full = draw_targets(qp, gp, 3, 11)
    assert torch.equal(draw_targets(qp[:4], gp, 3, 11), full[:4])
    monkeypatch.setattr(ranking, "_KEY_BLOCK", 2 * gp.shape[0])  # two query rows per block
    assert torch.equal(draw_targets(qp, gp, 3, 11), full)


def test_draw_targets_roughly_uniform() -> None:
    qp, gp = torch.tensor([0]), torch.tensor([0, 1, 0, 2, 3, 1])  # eligible: 1, 3, 4, 5
    counts = dict.fromkeys(range(6), 0)
    subsets = set()
    seeds = 400
    for seed in range(seeds):
        row = draw_targets(qp, gp, 2, seed)[0].tolist()
        subsets.add(tuple(row))
        for j in row:
            counts[j] += 1
    assert counts[0] == counts[2] == 0
    assert subsets == set(itertools.combinations([1, 3, 4, 5], 2))  # every pair drawn
    for j in (1, 3, 4, 5):  # each expected 200 times (sd 10)
        assert 150 < counts[j] < 250


def test_draw_targets_all_eligible_when_k_equals_their_count() -> None:
    gp = torch.tensor([0, 1, 2, 1])
    for seed in range(5):
        assert draw_targets(torch.tensor([0]), gp, 3, seed).tolist() == [[1, 2, 3]]
        assert draw_targets(torch.tensor([1]), gp, 2, seed).tolist() == [[0, 2]]


def test_draw_targets_errors() -> None:
    with pytest.raises(AdvbenchError, match=r"query 1 \(pid 1\) has 2 gallery images") as err:
        draw_targets(torch.tensor([0, 1]), torch.tensor([0, 1, 2, 1]), 3, 0)
    assert "\n" not in str(err.value)
    with pytest.raises(AdvbenchError, match="k must be"):
        draw_targets(torch.tensor([0]), torch.tensor([1, 2]), 0, 0)
    with pytest.raises(AdvbenchError, match="1-D"):
        draw_targets(torch.zeros(2, 2), torch.tensor([1, 2]), 1, 0)
    assert draw_targets(torch.tensor([], dtype=torch.long), torch.tensor([1, 2]), 1, 0).shape == (0, 1)


def test_scores_from_stored_ranks_equal_scores_from_the_distances() -> None:
    gen = torch.Generator().manual_seed(3)
    distmat = torch.rand(7, 30, generator=gen)
    candidates = torch.randint(0, 30, (7, 4), generator=gen)
    direct = target_scores(distmat, candidates)
    stored = scores_from_ranks(candidate_ranks(distmat, candidates).tolist(), 30)
    assert (direct.mean_rank, direct.top1, direct.top5, direct.top10) == (
        stored.mean_rank,
        stored.top1,
        stored.top5,
        stored.top10,
    )
    assert np.array_equal(direct.query_rank, stored.query_rank)
    with pytest.raises(AdvbenchError, match="must lie in"):
        scores_from_ranks([[30]], 30)


def test_gallery_targets_follow_their_rule() -> None:
    from advbench.metrics.ranking import draw_gallery_targets

    gen = torch.Generator().manual_seed(0)
    qp, qc = torch.randint(0, 6, (30,), generator=gen), torch.randint(0, 3, (30,), generator=gen)
    gp, gc = torch.randint(0, 8, (60,), generator=gen), torch.randint(0, 3, (60,), generator=gen)
    common = dict(n_images=12, k=3, seed=5)
    demote = draw_gallery_targets(qp, qc, gp, gc, goal="demote", **common)
    assert len(demote.rows) == 12 and demote.rows.tolist() == sorted(set(demote.rows.tolist()))
    for r, queries in zip(demote.rows.tolist(), demote.queries, strict=True):
        mine = [i for i in range(30) if qp[i] == gp[r] and qc[i] != gc[r]]
        assert 1 <= len(queries) <= 3 and set(queries) <= set(mine) and len(queries) == min(3, len(mine))
    targeted = draw_gallery_targets(qp, qc, gp, gc, goal="targeted", **common)
    for r, queries in zip(targeted.rows.tolist(), targeted.queries, strict=True):
        assert len(queries) == 3 and all(qp[i] != gp[r] for i in queries)
    again = draw_gallery_targets(qp, qc, gp, gc, goal="demote", **common)
    assert again.rows.tolist() == demote.rows.tolist() and again.queries == demote.queries
    padded = demote.padded(3)
    assert padded.shape == (12, 3) and all(set(p.tolist()) == set(q) for p, q in zip(padded, demote.queries))
    q_rows, g_rows = demote.pairs()
    assert len(q_rows) == sum(map(len, demote.queries)) == len(g_rows)
    everything = draw_gallery_targets(qp, qc, gp, gc, goal="targeted", n_images=1000, k=3, seed=5)
    assert len(everything.rows) == 60
    with pytest.raises(AdvbenchError, match="goal"):
        draw_gallery_targets(qp, qc, gp, gc, goal="untargeted", **common)
