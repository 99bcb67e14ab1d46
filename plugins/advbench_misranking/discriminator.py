"""The multi-stage discriminator: three spectral-norm PatchGANs on a [clean, candidate] image pyramid.

Each branch sees the 6-channel pair at one scale (full, 1/2, 1/4; 3x3 average pooling between scales)
and outputs a patch map of real/fake scores. Layout of one branch (official ``sub_Discriminator``,
``n_layers=3``): SN-conv 4x4/2 + LeakyReLU, then SN-conv 4x4/2 + BN + LeakyReLU twice, SN-conv 4x4/1 +
BN + LeakyReLU, and a plain 4x4/1 conv to one channel, all with TF-style "same" padding so that tiny
inputs never shrink to nothing.

Deviation: the official ``GANLoss`` only reads the last list entry, so only its 1/4-scale branch ever
trained (misranking.md §1.5); here every branch's output enters the loss (see
:func:`advbench_misranking.losses.lsgan_loss`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


class SameConv(nn.Module):
    """A conv whose output is ceil(input / stride) on each side, padding as TensorFlow's "same"."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        self.k = int(conv.kernel_size[0])
        self.s = int(conv.stride[0])

    def forward(self, x: Tensor) -> Tensor:
        pads: list[int] = []
        for size in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(size / self.s) - 1) * self.s + self.k - size, 0)
            pads += [total // 2, total - total // 2]
        return self.conv(F.pad(x, pads))


class PatchDiscriminator(nn.Module):
    """One PatchGAN branch on a 6-channel [clean, candidate] pair in [0, 1]."""

    def __init__(self, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            SameConv(spectral_norm(nn.Conv2d(6, ndf, 4, stride=2))),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        channels = ndf
        for i in range(1, n_layers + 1):
            out = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [
                SameConv(spectral_norm(nn.Conv2d(channels, out, 4, stride=stride, bias=False))),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out
        layers.append(SameConv(nn.Conv2d(channels, 1, 4)))
        self.net = nn.Sequential(*layers)

    def forward(self, pair: Tensor) -> Tensor:
        return self.net(pair * 2.0 - 1.0)


class MultiScaleDiscriminator(nn.Module):
    """``num_scales`` PatchGAN branches; ``forward(clean, candidate)`` returns one score map per scale."""

    def __init__(self, ndf: int = 64, n_layers: int = 3, num_scales: int = 3) -> None:
        super().__init__()
        self.branches = nn.ModuleList(PatchDiscriminator(ndf, n_layers) for _ in range(num_scales))

    def forward(self, clean: Tensor, candidate: Tensor) -> list[Tensor]:
        pair = torch.cat([clean, candidate], dim=1).contiguous(memory_format=torch.channels_last)
        outputs = []
        for i, branch in enumerate(self.branches):
            if i:
                pair = F.avg_pool2d(pair, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(branch(pair))
        return outputs
