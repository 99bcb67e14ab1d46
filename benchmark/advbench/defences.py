"""Attacking and scoring through a defence: the adaptive source victim, and defended scores.

An input defence transforms the query images before the victim (the gallery is the operator's own,
clean, data); a randomised one is scored as the mean over its seeded draws. A ranking defence
re-ranks the query-gallery distances. Adaptive attacks craft against
:class:`~advbench.defended.DefendedVictim` (BPDA through non-differentiable transforms, EOT over
randomised ones), so a defence is never credited with robustness that only comes from broken
gradients.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from advbench.api import AdvbenchError, Defence, ImageSplit, InputDefence, RankingDefence, Victim
from advbench.batching import run_batches
from advbench.clean import CleanVictim
from advbench.context import TaskContext
from advbench.defended import DefendedVictim, defended_features
from advbench.metrics.reid import (
    ReidScores,
    distance_matrix,
    evaluate,
    evaluate_cuhk03_classic,
    gallery_distances,
)
from advbench.plan import DefenceChoice


def build_defence(choice: DefenceChoice, ctx: TaskContext) -> Defence:
    entry, _ = ctx.registry.get("defence", choice.name)
    defence = entry.spec.build(**dict(choice.params))
    if not isinstance(defence, InputDefence | RankingDefence):
        raise AdvbenchError(
            f"defence {choice.name}: build returned {type(defence).__name__}, not an InputDefence or RankingDefence"
        )
    return defence


def attacked_victim(victim: Victim, choice: DefenceChoice | None, ctx: TaskContext, seed: int) -> Victim:
    """The victim an attack differentiates: ``victim`` itself, or seen through an input defence."""
    if choice is None or choice.ranking:
        return victim
    defence = build_defence(choice, ctx)
    assert isinstance(defence, InputDefence)
    return DefendedVictim(victim, defence, seed=seed).eval()


@torch.no_grad()
def _draw_features(
    model: Victim, defence: InputDefence, split: ImageSplit, seed: int, ctx: TaskContext, batch_size: int
) -> list[Tensor]:
    """Features ``[N, D]`` of each draw of ``defence`` on ``split`` (one draw when deterministic);
    each batch's draws are seeded by its first row, so they do not depend on the batch size."""
    model.eval()
    out: list[Tensor] = []

    def step(rows: slice) -> None:
        with ctx.autocast():
            feats = defended_features(model, defence, split.batch(rows, ctx.device), seed=seed + rows.start)
        if not out:
            out.extend(torch.empty(len(split), f.shape[1]) for f in feats)
        for o, f in zip(out, feats, strict=True):
            o[rows] = f.float().cpu()

    run_batches(len(split), batch_size, step)
    return out


def _score(dist: Tensor, target: CleanVictim, query: ImageSplit, protocol: str, seed: int) -> ReidScores:
    index = target.index
    if protocol == "cuhk03-classic":
        return evaluate_cuhk03_classic(dist, query.pids, index.pids, query.camids, index.camids, seed=seed)
    return evaluate(dist, query.pids, index.pids, query.camids, index.camids)


def mean_scores(draws: list[ReidScores]) -> ReidScores:
    """Scores averaged over the draws of a randomised defence (per-query AP too)."""
    if len(draws) == 1:
        return draws[0]
    aps = [d.query_ap for d in draws]
    return ReidScores(
        mAP=float(np.mean([d.mAP for d in draws])),
        cmc=np.mean([d.cmc for d in draws], axis=0).tolist(),
        mINP=float(np.mean([d.mINP for d in draws])),
        num_valid_queries=draws[0].num_valid_queries,
        query_ap=None if any(a is None for a in aps) else np.mean(np.stack(aps), axis=0),
    )


def defended_scores(
    defence: Defence,
    model: Victim,
    images: ImageSplit,
    features: Tensor | None,
    target: CleanVictim,
    query: ImageSplit,
    ctx: TaskContext,
    *,
    protocol: str,
    seed: int,
    batch_size: int,
) -> tuple[ReidScores, Tensor]:
    """Scores of ``images`` (clean or adversarial queries) on ``target`` through ``defence``, and
    the query features scored (the first draw's for a randomised defence).

    ``features`` are the undefended features of ``images`` when known (a ranking defence needs no
    others).
    """
    if isinstance(defence, InputDefence):
        feats = _draw_features(model, defence, images, seed, ctx, batch_size)
        draws = [_score(gallery_distances(f, target.index), target, query, protocol, seed) for f in feats]
        return mean_scores(draws), feats[0]
    assert features is not None
    index = target.index
    q_g = gallery_distances(features, index)
    q_q = distance_matrix(features, features, index.distance).to(q_g)
    g_g = gallery_distances(index.features, index)
    dist = defence.rerank(q_g, q_q, g_g)
    if tuple(dist.shape) != tuple(q_g.shape) or not torch.isfinite(dist).all():
        raise AdvbenchError(
            f"ranking defence {type(defence).__name__} returned distances of shape {tuple(dist.shape)} "
            f"(expected {tuple(q_g.shape)}) or with NaN/Inf"
        )
    return _score(dist, target, query, protocol, seed), features
