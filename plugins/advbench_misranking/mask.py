"""Controllable mode: a learnable Gumbel-softmax top-k mask that confines the attack to k pixels.

The slide formula ``p = softmax((log λ + Gumbel) / τ)`` over the H x W positions, ``M = KeepTopK(p)``
forward and ``p`` backward (straight-through). ``λ`` comes from :class:`MaskHead`, a small spectral-norm
encoder-decoder over the [clean, candidate] pair (the official head sat on the discriminator's features),
and ``τ`` is a learnable temperature.

Deviation: both belong to the *generator's* optimiser, so they really train; in the official code the
head's gradients came only from the generator loss and were erased by ``optimizer_D.zero_grad()`` before
the discriminator step, so the head stayed at its random initialisation (misranking.md §1.5). At test time
(``noise=None``) the top-k is deterministic instead of Gumbel-sampled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


def gumbel_topk(logits: Tensor, k: int, tau: Tensor | float = 1.0, noise: Tensor | None = None) -> Tensor:
    """Straight-through top-k mask ``[N, L]`` from ``logits [N, L]``: exactly k ones per row forward.

    ``noise`` is standard Gumbel noise of the same shape (None: no noise). The backward pass is that of
    ``softmax((logits + noise) / tau)``. Unselected entries are exactly 0 (``-s + s`` is exact).
    """
    if not 0 < k <= logits.shape[1]:
        raise ValueError(f"k={k} pixels is out of range for {logits.shape[1]} positions")
    scores = logits if noise is None else logits + noise
    soft = F.softmax(scores / tau, dim=1)
    hard = torch.zeros_like(soft).scatter_(1, soft.detach().topk(k, dim=1).indices, 1.0)
    return hard - soft.detach() + soft


def sample_gumbel(shape: torch.Size, generator: torch.Generator, device: torch.device) -> Tensor:
    """Standard Gumbel noise drawn on CPU from ``generator`` (reproducible across devices)."""
    u = torch.rand(shape, generator=generator).clamp_(1e-10, 1.0 - 1e-7)
    return (-torch.log(-torch.log(u))).to(device)


class MaskHead(nn.Module):
    """Per-pixel logits ``[N, 1, H, W]`` from a [clean, candidate] pair: where the k pixels should go.

    Three SN-conv stages (full, 1/2, 1/4 resolution), then a top-down path: bilinear upsampling of a
    1x1-reduced coarse map added to the finer stage, an SN-conv, and a 1x1 conv to one logit per pixel.
    Channels shrink toward full resolution to keep the head cheap there.
    """

    def __init__(self, width: int = 16) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
            conv = spectral_norm(nn.Conv2d(cin, cout, 3, stride=stride, padding=1))
            return nn.Sequential(conv, nn.LeakyReLU(0.2, inplace=True))

        self.enc1 = block(6, width)
        self.enc2 = block(width, width * 2, 2)
        self.enc3 = block(width * 2, width * 4, 2)
        self.reduce3 = nn.Conv2d(width * 4, width * 2, 1)
        self.reduce2 = nn.Conv2d(width * 2, width, 1)
        self.fuse2 = block(width * 2, width * 2)
        self.fuse1 = block(width, width)
        self.out = nn.Conv2d(width, 1, 1)
        self.log_tau = nn.Parameter(torch.zeros(()))

    @property
    def tau(self) -> Tensor:
        return self.log_tau.exp()

    def forward(self, clean: Tensor, candidate: Tensor) -> Tensor:
        pair = torch.cat([clean, candidate], 1).contiguous(memory_format=torch.channels_last)
        x1 = self.enc1(pair * 2.0 - 1.0)
        x2 = self.enc2(x1)
        x3 = self.enc3(x2)
        y = self.fuse2(F.interpolate(self.reduce3(x3), size=x2.shape[-2:], mode="bilinear") + x2)
        y = self.fuse1(F.interpolate(self.reduce2(y), size=x1.shape[-2:], mode="bilinear") + x1)
        return self.out(y)

    def mask(
        self, clean: Tensor, candidate: Tensor, k: int, generator: torch.Generator | None = None
    ) -> Tensor:
        """Top-k pixel mask ``[N, 1, H, W]``: Gumbel-sampled when ``generator`` is given, else deterministic."""
        logits = self(clean, candidate).flatten(1)
        noise = None if generator is None else sample_gumbel(logits.shape, generator, logits.device)
        return gumbel_topk(logits, k, self.tau, noise).view(clean.shape[0], 1, *clean.shape[-2:])
