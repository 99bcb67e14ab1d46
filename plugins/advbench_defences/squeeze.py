"""Feature squeezing (Xu et al., NDSS 2018, "Feature Squeezing: Detecting Adversarial Examples in
Deep Neural Networks"): colour bit-depth reduction and local median smoothing of the queries.

Xu et al. evaluate 4- and 5-bit colour depth and 2x2 to 3x3 median filters on ImageNet-size
colour images; the defaults here are 4 bits and a 3x3 filter. Here both are used as input
transforms in front of the victim (the paper also uses them to detect adversarial inputs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from advbench.api import AdvbenchError, DefenceSpec, InputDefence
from advbench_defences.common import check_images, int_param


class BitDepth(InputDefence):
    """Round each pixel to the nearest of ``2**bits`` evenly spaced levels in [0, 1].

    Rounding has zero gradient almost everywhere, so adaptive attacks go through it with BPDA.
    """

    differentiable = False

    def __init__(self, bits: int = 4) -> None:
        self.bits = int_param("bitdepth", "bits", bits, 1, 16)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_images("bitdepth", images)
        top = float(2**self.bits - 1)
        return images.clamp(0.0, 1.0).mul(top).round().div(top)


def median_filter(images: Tensor, k: int) -> Tensor:
    """``k`` x ``k`` median of each channel (odd ``k``), padding the border by reflection.

    Differentiable: the gradient of each output pixel flows to the input pixel that is the median.
    """
    if k == 1:
        return images.clone()
    n, c, h, w = images.shape
    pad = k // 2
    if pad >= h or pad >= w:
        raise AdvbenchError(f"defence 'median': k={k} needs images larger than {pad} pixels, got {h}x{w}")
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    windows = F.unfold(padded, kernel_size=k).view(n, c, k * k, h, w)
    return windows.median(dim=2).values


class Median(InputDefence):
    """``k`` x ``k`` median filter with reflect padding (local smoothing)."""

    differentiable = True

    def __init__(self, k: int = 3) -> None:
        self.k = int_param("median", "k", k, 1)
        if self.k % 2 == 0:
            raise AdvbenchError(f"defence 'median': k must be odd (a centred window), got {k}")

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_images("median", images)
        return median_filter(images, self.k)


BITDEPTH_SPEC = DefenceSpec(
    name="bitdepth",
    description="colour bit-depth reduction to 2**bits levels (Xu et al., NDSS 2018); BPDA for adaptive attacks",
    build=BitDepth,
    defaults={"bits": 4},
)
MEDIAN_SPEC = DefenceSpec(
    name="median",
    description="k x k median filter with reflect padding (Xu et al., NDSS 2018); differentiable",
    build=Median,
    defaults={"k": 3},
)
