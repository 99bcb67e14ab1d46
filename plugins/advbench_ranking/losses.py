"""Pure loss functions of the ranking and metric attacks: features in, per-image losses out.

The metric losses (:func:`metric_loss`, :func:`furthest_negative_loss`) are *maximised* by their
attacks; the ranking losses (:func:`query_attack_loss`, :func:`candidate_attack_loss`) are hinges of
the violated ranking inequalities, zero when the goal is met, and are *minimised*. Each returns one
value per image of the batch, so a batch's result never depends on the other images in it. Distances are the ones
advbench ranks with (:mod:`advbench.metrics.reid`): ``cosine`` is ``1 - cos(a, b)`` of the
L2-normalised rows, ``euclidean`` is the **squared** Euclidean distance. They are computed in float32
whatever the features' dtype, so an attack run under autocast ranks like the evaluation.

Guide sets of different sizes per image (an identity's gallery images) travel as a padded index
``[B, P]`` into a feature bank plus a boolean ``mask`` of the same shape (False = padding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from advbench.api import AdvbenchError, Distance

__all__ = [
    "candidate_attack_loss",
    "furthest_negative_loss",
    "guide_sets",
    "identity_prototypes",
    "metric_loss",
    "pairwise_distances",
    "query_attack_loss",
]


def _check_distance(distance: str) -> None:
    if distance not in ("cosine", "euclidean"):
        raise AdvbenchError(f"unknown distance {distance!r}: use 'cosine' or 'euclidean'")


def pairwise_distances(a: Tensor, b: Tensor, distance: Distance) -> Tensor:
    """Distances ``[..., N, M]`` between the rows of ``a`` ``[..., N, D]`` and ``b`` ``[..., M, D]``.

    ``cosine``: ``1 - cos`` (in [0, 2]); ``euclidean``: squared L2, clamped at 0 (the matmul form
    can dip below 0 by rounding). Differentiable in both arguments; float32.
    """
    _check_distance(distance)
    a, b = a.float(), b.float()
    if distance == "cosine":
        return 1.0 - F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2)
    sq = (a * a).sum(-1)[..., :, None] + (b * b).sum(-1)[..., None, :]
    return (sq - 2.0 * a @ b.transpose(-1, -2)).clamp(min=0.0)


def _to_many(query: Tensor, others: Tensor, distance: Distance) -> Tensor:
    """``d(query[i], others[i, j])``: ``[B, M]`` from ``query`` ``[B, D]`` and ``others`` ``[B, M, D]``."""
    return pairwise_distances(query[:, None, :], others, distance)[:, 0, :]


def query_attack_loss(
    query: Tensor, candidates: Tensor, bank: Tensor, distance: Distance, goal: str
) -> Tensor:
    """Zhou et al.'s query-attack ranking loss (QA+ / QA-), one value per query: ``[B]``.

    ``query`` ``[B, D]`` are the (adversarial) query features, ``candidates`` ``[B, k, D]`` the chosen
    candidates C of each query, ``bank`` ``[X, D]`` the items X they must overtake (or fall behind).

    * ``targeted`` (QA+): ``mean_{c in C, x in X} [d(q, c) - d(q, x)]_+`` -- zero once every chosen
      candidate is closer to q than every item of X, i.e. ranks at the top;
    * ``demote`` (QA-): ``mean_{c in C, x in X} [d(q, x) - d(q, c)]_+`` -- zero once every candidate
      is further than every item of X.

    The paper (Eq. for L_QA) writes a double sum; the official code (advrank,
    ``LossFactory.RankLossQueryAttack``) averages over the ``k x X`` pairs, which is what we do: with a
    sign-gradient step the scale is irrelevant, and the mean keeps the official balance with the
    semantics-preserving term (:class:`advbench_ranking.attacks.RankPGD`).
    """
    d_c = _to_many(query, candidates, distance)  # [B, k]
    d_x = pairwise_distances(query, bank, distance)  # [B, X]
    diff = d_c[:, :, None] - d_x[:, None, :]  # [B, k, X]
    if goal == "targeted":
        return diff.clamp(min=0.0).mean(dim=(1, 2))
    if goal == "demote":
        return (-diff).clamp(min=0.0).mean(dim=(1, 2))
    raise AdvbenchError(f"the query-attack loss needs goal 'targeted' or 'demote', got {goal!r}")


def candidate_attack_loss(
    candidate: Tensor, queries: Tensor, bank: Tensor, distance: Distance, goal: str
) -> Tensor:
    """Zhou et al.'s candidate-attack ranking loss (CA+ / CA-), one value per candidate: ``[N]``.

    ``candidate`` ``[N, D]`` are the (adversarial) candidate features, ``queries`` ``[N, W, D]`` the
    queries Q each candidate should rank high (``targeted``, CA+) or low (``demote``, CA-) for, and
    ``bank`` ``[X, D]`` the other candidates it competes with:

    * CA+: ``mean_{q in Q, x in X} [d(q, c) - d(q, x)]_+``;
    * CA-: ``mean_{q in Q, x in X} [d(q, x) - d(q, c)]_+``.

    As for :func:`query_attack_loss`, the official code's mean instead of the paper's sum.
    """
    d_c = _to_many(candidate, queries, distance)  # [N, W]: d(q_w, c)
    d_x = pairwise_distances(queries, bank[None].expand(len(queries), -1, -1), distance)  # [N, W, X]
    diff = d_c[:, :, None] - d_x
    if goal == "targeted":
        return diff.clamp(min=0.0).mean(dim=(1, 2))
    if goal == "demote":
        return (-diff).clamp(min=0.0).mean(dim=(1, 2))
    raise AdvbenchError(f"the candidate-attack loss needs goal 'targeted' or 'demote', got {goal!r}")


def metric_loss(adv: Tensor, guides: Tensor, mask: Tensor, distance: Distance) -> Tensor:
    """Bai et al.'s non-targeted metric loss: ``sum_{g in G} d(f(x'), g)`` per image, ``[B]``.

    ``guides`` ``[B, P, D]`` are each image's pushing guides (its identity's gallery features),
    ``mask`` ``[B, P]`` says which are real. An image without guides gets 0 (and no gradient).
    """
    d = _to_many(adv, guides, distance)
    return (d * mask.to(d.dtype)).sum(dim=1)


def furthest_negative_loss(
    adv: Tensor, push: Tensor, mask: Tensor, pull: Tensor, distance: Distance
) -> Tensor:
    """Bouniot et al.'s Furthest-Negative Attack loss, per image ``[B]``.

    ``sum_{p in P} d(f(x'), p) - d(f(x'), mu_far)``: push away from every pushing guide ``p``
    (``push`` ``[B, P, D]`` with ``mask``; the image's own clean feature and its identity's gallery
    features) while pulling towards ``pull`` ``[B, D]``, the prototype (mean feature) of the identity
    cluster furthest from the clean image. The official code (CEA-LIST/adv-reid, ``max_min_mse``)
    has the same sum of pushes minus one pull, on squared L2 of the (L2-normalised for cosine)
    features.
    """
    pushes = metric_loss(adv, push, mask, distance)
    pulls = _to_many(adv, pull[:, None, :], distance)[:, 0]
    return pushes - pulls


def guide_sets(
    query_pids: Tensor,
    query_camids: Tensor,
    gallery_pids: Tensor,
    gallery_camids: Tensor,
    *,
    cross_camera: bool = True,
) -> tuple[Tensor, Tensor]:
    """Each query's gallery positives as a padded ``[B, P]`` index and its ``[B, P]`` mask.

    A positive shares the query's pid; with ``cross_camera`` (default) it must also come from
    another camera: those are the true matches the Market-1501 protocol scores, the same-camera
    ones being junk it removes. ``P`` is the largest count in the batch (at least 1); padded
    slots point at row 0 with mask False. Rows are in ascending gallery order.
    """
    same = query_pids[:, None] == gallery_pids[None, :]
    if cross_camera:
        same &= query_camids[:, None] != gallery_camids[None, :]
    counts = same.sum(dim=1)
    width = max(1, int(counts.max()) if counts.numel() else 1)
    # stable sort puts the positives first, in gallery order
    order = torch.sort((~same).to(torch.int8), dim=1, stable=True).indices[:, :width]
    mask = torch.arange(width, device=same.device)[None, :] < counts[:, None]
    return torch.where(mask, order, torch.zeros_like(order)), mask


def identity_prototypes(features: Tensor, pids: Tensor, distance: Distance) -> tuple[Tensor, Tensor]:
    """(prototypes ``[I, D]``, their pids ``[I]``): the mean feature of each gallery identity.

    For ``cosine`` the rows are L2-normalised before averaging (the space the distance lives in),
    as the official FNA code averages the normalised features of its cosine models.
    """
    _check_distance(distance)
    feats = features.float()
    if distance == "cosine":
        feats = F.normalize(feats, dim=1)
    values, inverse = torch.unique(pids, return_inverse=True)
    sums = torch.zeros(len(values), feats.shape[1], device=feats.device).index_add_(0, inverse, feats)
    counts = torch.bincount(inverse, minlength=len(values)).clamp(min=1)
    return sums / counts[:, None].to(sums.dtype), values
