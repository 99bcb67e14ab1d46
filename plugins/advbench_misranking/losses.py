"""The four losses of the Mis-Ranking generator: mis-ranking, mis-classification, perception, GAN.

Deviations from the official ``advloss.py`` (each explained in docs/misranking.md):

* mis-ranking: the nearest same-identity sample excludes the anchor itself (the official minimum
  included it, a distance of ~0, so only the "pull the farthest other identity in" half ever worked);
  no ``log`` around the hinge (once the anchor is excluded the hinge can reach 0 and ``log 0 = -inf``).
* mis-classification: the smoothing mass is spread uniformly over the classes absent from the batch and
  sums to one (the official zeroed those columns without renormalising); no ``log`` around it either.
* perception: MS-SSIM on [0, 1] pixels with data_range 1 via pytorch-msssim (the official ran an early
  copy of that package on ImageNet-normalised tensors, with its last-scale exponent bug); the window and
  number of scales are fitted to the image size, and single-scale SSIM is used below what MS-SSIM allows.
* GAN: least squares (the official code's choice; the slides show the log-likelihood form), averaged
  over every scale of the multi-stage discriminator rather than the coarsest one alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim, ssim
from torch import Tensor

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def pairwise_euclidean(a: Tensor, b: Tensor) -> Tensor:
    """Non-squared Euclidean distances ``[len(a), len(b)]`` with a floor under the root (finite gradient)."""
    sq = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1).unsqueeze(0) - 2.0 * a @ b.t()
    return sq.clamp_min(1e-12).sqrt()


def misranking_loss(
    features: Tensor, pids: Tensor, margin: float = 0.3, reference: Tensor | None = None
) -> Tensor:
    """Hardest inverted triplet: ``mean_i [max_{y_j != y_i} d_ij - min_{j != i, y_j = y_i} d_ij + margin]_+``.

    ``features`` are the (adversarial) anchors; ``reference`` (same order and pids) defaults to the
    anchors themselves (the paper's form). The farthest other-identity sample is pulled in, the nearest
    same-identity sample (never the anchor's own index) is pushed out. Every anchor needs another
    sample of its identity and one of another identity in the batch (P x K sampling guarantees both).
    """
    ref = features if reference is None else reference
    dist = pairwise_euclidean(features, ref)
    same = pids.unsqueeze(1) == pids.unsqueeze(0)
    eye = torch.eye(len(pids), dtype=torch.bool, device=pids.device)
    if not bool((same & ~eye).any(1).all()) or not bool((~same).any(1).all()):
        raise ValueError("every anchor needs another image of its identity and one of another identity")
    farthest_other = dist.masked_fill(same, float("-inf")).amax(1)
    nearest_same = dist.masked_fill(~same | eye, float("inf")).amin(1)
    return F.relu(farthest_other - nearest_same + margin).mean()


def least_likely_xent(logits: Tensor, pids: Tensor, smoothing: float = 0.1) -> Tensor:
    """Cross-entropy toward each image's least-likely class, label-smoothed away from the batch's ids.

    Target ``q = (1 - s) * onehot(argmin logits) + s * u`` where ``u`` is uniform over the classes not in
    ``pids`` (all classes when the batch covers every class).
    """
    num_classes = logits.shape[1]
    target_cls = logits.detach().argmin(1)
    uniform = torch.ones(num_classes, device=logits.device, dtype=logits.dtype)
    uniform[pids.long().clamp(0, num_classes - 1)] = 0.0
    if uniform.sum() == 0:
        uniform.fill_(1.0)
    uniform = uniform / uniform.sum()
    q = smoothing * uniform.expand_as(logits).clone()
    q.scatter_add_(
        1, target_cls.unsqueeze(1), torch.full_like(target_cls, 1.0 - smoothing, dtype=q.dtype).unsqueeze(1)
    )
    return -(q * F.log_softmax(logits, 1)).sum(1).mean()


def perception_setting(height: int, width: int) -> tuple[str, int, int]:
    """(metric, window, scales) that pytorch-msssim accepts at this size.

    ``ms_ssim`` asserts ``min side > (win - 1) * 16`` whatever the number of scales, so the widest odd
    window up to 11 satisfying it is used with all 5 scales (win 3 at 128x64, 7 at 256x128); when not even
    win 3 fits (short side <= 32), single-scale SSIM with a window up to 11 is used instead.
    """
    side = min(height, width)
    win = min(11, (side - 1) // 16 + 1)
    win -= 1 - win % 2
    if win >= 3:
        return "ms_ssim", win, len(MSSSIM_WEIGHTS)
    win = min(11, side - (1 - side % 2))
    return "ssim", max(win, 1), 1


def perception_loss(clean: Tensor, adv: Tensor) -> Tensor:
    """``1 - MS-SSIM(clean, adv)`` on [0, 1] images (data_range 1), or ``1 - SSIM`` at tiny sizes."""
    metric, win, _ = perception_setting(*clean.shape[-2:])
    if metric == "ms_ssim":
        return 1.0 - ms_ssim(clean, adv, data_range=1.0, win_size=win, weights=list(MSSSIM_WEIGHTS))
    return 1.0 - ssim(clean, adv, data_range=1.0, win_size=win)


def lsgan_loss(outputs: list[Tensor], real: bool) -> Tensor:
    """Least-squares GAN loss averaged over the discriminator's scales (target 1 for real, 0 for fake)."""
    target = 1.0 if real else 0.0
    return torch.stack([F.mse_loss(o, torch.full_like(o, target)) for o in outputs]).mean()
