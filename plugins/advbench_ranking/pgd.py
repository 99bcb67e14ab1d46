"""The L∞ sign-gradient loop every attack of this package runs (FGSM, I-FGSM, MI-FGSM, PGD).

Kept here rather than imported from another plugin (plugins must not import each other). It is the
textbook loop: optional uniform random start in the ball (Madry et al., ICLR 2018), ``steps``
ascent steps of size ``alpha`` on ``sign(g)``, each followed by the projection onto the ball
around the clean images and onto [0, 1]. With ``momentum`` > 0 the step follows MI-FGSM's
accumulated gradient (Dong et al., CVPR 2018): ``g <- momentum * g + grad / mean|grad|`` per image.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from advbench.api import AdvbenchError

#: advbench's PGD schedule (as ``pgd`` and ``feature-pgd``): ``alpha = ALPHA_PER_STEP * eps / steps``.
ALPHA_PER_STEP = 2.5


def schedule(name: str, eps: float, steps: int, alpha: float | None) -> tuple[int, float]:
    """(steps, alpha in [0, 1] pixel units) from ``eps`` and ``alpha`` in 1/255 units; checked."""
    if int(steps) < 1:
        raise AdvbenchError(f"{name} needs steps >= 1, got {steps}")
    if alpha is not None and not float(alpha) > 0:
        raise AdvbenchError(f"{name} needs alpha > 0 (in 1/255 units), got {alpha}")
    step = float(alpha) if alpha is not None else ALPHA_PER_STEP * float(eps) / int(steps)
    return int(steps), step / 255.0


def linf_ascent(
    images: Tensor,
    loss: Callable[[Tensor], Tensor],
    *,
    eps: float,
    steps: int,
    alpha: float,
    random_start: bool,
    momentum: float = 0.0,
) -> Tensor:
    """Adversarial images maximising ``loss(adv).sum()`` within ``‖adv - images‖∞ <= eps``, in [0, 1].

    ``eps`` and ``alpha`` are in [0, 1] pixel units here. ``loss`` maps a batch to per-image losses
    ``[B]`` (summed, so each image follows its own gradient). The random start draws from torch's
    global generator, which the runner seeds before every batch. The input is not modified.
    """
    clean = images.detach()
    adv = clean.clone()
    if random_start and eps > 0:
        adv = (adv + torch.empty_like(adv).uniform_(-eps, eps)).clamp(0.0, 1.0)
    accumulated = torch.zeros_like(clean) if momentum else None
    for _ in range(steps):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(adv).sum(), adv)
        with torch.no_grad():
            if accumulated is not None:
                scale = grad.abs().flatten(1).mean(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1)
                accumulated = momentum * accumulated + grad / scale
                grad = accumulated
            adv = adv.detach() + alpha * grad.sign()
            adv = (clean + (adv - clean).clamp(-eps, eps)).clamp(0.0, 1.0)
    return adv.detach()
