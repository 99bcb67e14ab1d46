"""The neighbourhood model and the four losses of Li et al., "Universal Perturbation Attack Against
Image Retrieval" (ICCV 2019), re-implemented from the behaviour of the official code (GitHub
theFool32/UAP_retrieval, ``cirtorch/examples/attack/attack.py`` and ``myutil/triplet_dataset.py``).

The neighbourhood of the clean train features is summarised by k-means centres ``C`` (officially 512
centres of 20k features; here ``clusters`` of at most ``pool``). For a train image with clean feature
``f`` and adversarial feature ``f' = F(clip(x + δ))`` (both in the retrieval space of
:func:`retrieval_space`), the losses, all *minimised* over δ, are:

* point-wise: ``(<f', f> + 1) / 2``, written ``1 - ||f' - f||² / 4`` so that it also reads for a
  Euclidean victim: the adversarial query leaves its own clean position.
* pair-wise: ``max(0, s||f' - c_far|| - s||f' - c_near|| + m)`` with ``c_near`` / ``c_far`` the centres
  nearest to / farthest from the *clean* feature: the query is pulled to the far side of the feature
  space and pushed out of its own neighbourhood (the paper's Eq. 6 as corrected in the official
  README: the gradient is ``∂d(f', f_j)/∂δ - ∂d(f', f_k)/∂δ``).
* list-wise: LambdaRank (Burges et al.) on the centres, the target list being the clean ranking
  *reversed*: ``sum_{i ≻ j} |ΔNDCG_ij| · log(1 + exp(-(σ_i - σ_j)))`` with scores
  ``σ = -s<f', C>`` and ``i ≻ j`` when centre ``i`` is nearer to the clean feature than ``j``.
* label-wise: a margin loss ``max(0, z_y - max_{j≠y} z_j)`` on logits ``z = s<f', C>`` with
  ``y`` the clean feature's nearest centre (a nearest-centroid classifier; officially an MLP trained on
  the k-means labels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from advbench.api import Distance


def retrieval_space(feats: Tensor, distance: Distance, norm: float) -> Tensor:
    """Features where the victim's ranking is Euclidean and of unit scale.

    Cosine victims: L2-normalised (what their ranking compares). Euclidean victims: divided by
    ``norm``, the mean norm of the clean pool features, so that margins mean the same thing.
    """
    if distance == "cosine":
        return F.normalize(feats, dim=1)
    return feats / norm


def kmeans(x: Tensor, k: int, iters: int, generator: torch.Generator) -> Tensor:
    """``k`` centres of the rows of ``x`` (Lloyd's algorithm from a k-means++ start, seeded by
    ``generator``); an emptied cluster is re-seeded on the point farthest from its centre."""
    n = x.shape[0]
    k = min(k, n)
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [x[first]]
    d2 = (x - x[first]).pow(2).sum(1)
    for _ in range(1, k):
        weights = d2.clamp_min(0) + 1e-12
        idx = int(torch.multinomial(weights.cpu(), 1, generator=generator))
        centres.append(x[idx])
        d2 = torch.minimum(d2, (x - x[idx]).pow(2).sum(1))
    c = torch.stack(centres)
    for _ in range(iters):
        dist = torch.cdist(x, c)
        assign = dist.argmin(1)
        new = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        new = new / counts.clamp_min(1).unsqueeze(1)
        if empty.any():
            far = dist.gather(1, assign[:, None]).squeeze(1).argsort(descending=True)
            new[empty] = x[far[: int(empty.sum())]]
        if torch.allclose(new, c):
            break
        c = new
    return c


def point_loss(adv: Tensor, clean: Tensor) -> Tensor:
    """``1 - ||f' - f||² / 4`` per image (``(<f', f> + 1) / 2`` for unit features)."""
    return 1.0 - (adv - clean).pow(2).sum(1) / 4.0


def nearest_and_farthest(clean: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
    """Indices of the centre nearest to and farthest from each clean feature."""
    dist = torch.cdist(clean, centres)
    return dist.argmin(1), dist.argmax(1)


def pair_loss(adv: Tensor, clean: Tensor, centres: Tensor, margin: float, scale: float) -> Tensor:
    """Triplet hinge per image: anchor ``f'``, "positive" the farthest centre, "negative" the nearest."""
    near, far = nearest_and_farthest(clean, centres)
    d_far = (scale * (adv - centres[far])).norm(dim=1)
    d_near = (scale * (adv - centres[near])).norm(dim=1)
    return F.relu(d_far - d_near + margin)


def _ideal_dcg(gains: Tensor) -> Tensor:
    ranked = gains.sort(dim=1, descending=True).values
    discounts = 1.0 / torch.log2(torch.arange(gains.shape[1], device=gains.device, dtype=gains.dtype) + 2.0)
    return (ranked * discounts).sum(1).clamp_min(1e-12)


def list_loss(adv: Tensor, clean: Tensor, centres: Tensor, scale: float) -> Tensor:
    """LambdaRank per image towards the reversed clean ranking of the centres.

    Relevance ``r_i = 1 - rank_i / (k - 1)`` where ``rank_i`` is centre ``i``'s clean rank (0 = nearest),
    gains ``2^r - 1``; scores ``σ = -s<f', C>`` (a centre ranks high when it is *far* from ``f'``), and
    ``|ΔNDCG_ij|`` is the NDCG change of swapping ``i`` and ``j`` in the current ranking by ``σ``.
    """
    k = centres.shape[0]
    with torch.no_grad():
        clean_rank = torch.cdist(clean, centres).argsort(1).argsort(1).to(adv.dtype)
        rel = 1.0 - clean_rank / max(k - 1, 1)
        gains = torch.pow(2.0, rel) - 1.0
    scores = -scale * adv @ centres.t()
    with torch.no_grad():
        current = scores.argsort(1, descending=True).argsort(1).to(adv.dtype)
        discount = 1.0 / torch.log2(current + 2.0)
        delta_ndcg = (
            (gains[:, :, None] - gains[:, None, :]).abs()
            * (discount[:, :, None] - discount[:, None, :]).abs()
            / _ideal_dcg(gains)[:, None, None]
        )
        should = rel[:, :, None] > rel[:, None, :]  # i ≻ j in the target list
    diff = scores[:, :, None] - scores[:, None, :]
    pairwise = F.softplus(-diff) * delta_ndcg * should
    return pairwise.sum((1, 2))


def label_loss(adv: Tensor, clean: Tensor, centres: Tensor, scale: float) -> Tensor:
    """Margin hinge per image: the clean nearest centre must stop being the adversarial top logit."""
    near, _ = nearest_and_farthest(clean, centres)
    logits = scale * adv @ centres.t()
    true = logits.gather(1, near[:, None]).squeeze(1)
    other = logits.scatter(1, near[:, None], -math.inf).max(1).values
    return F.relu(true - other)


def universal_loss(
    parts: tuple[str, ...], adv: Tensor, clean: Tensor, centres: Tensor, margin: float, scale: float
) -> Tensor:
    """The batch mean of the sum of the chosen losses."""
    total = adv.new_zeros(adv.shape[0])
    for part in parts:
        if part == "point":
            total = total + point_loss(adv, clean)
        elif part == "pair":
            total = total + pair_loss(adv, clean, centres, margin, scale)
        elif part == "list":
            total = total + list_loss(adv, clean, centres, scale)
        elif part == "label":
            total = total + label_loss(adv, clean, centres, scale)
        else:  # validated by the config
            raise ValueError(part)
    return total.mean()
