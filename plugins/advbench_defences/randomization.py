"""Random resizing and padding of the queries (Xie et al., ICLR 2018, "Mitigating adversarial effects
through randomization").

Xie et al. resize a 299x299 input to a random size in [299, 331) and zero-pad it at a random offset
to 331x331, which the network then takes. A re-ID victim has a fixed input size, so here the padded
image is resized back to H x W afterwards: each draw is a small random zoom-out and shift. Every
step is differentiable (bilinear resizing, padding), so adaptive attacks differentiate through it and
average over draws (EOT, Athalye et al., ICML 2018).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from advbench.api import AdvbenchError, DefenceSpec, InputDefence
from advbench_defences.common import check_images, int_param


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """An integer uniform in ``[low, high]`` drawn from ``generator`` (the global RNG if None)."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(low, high + 1, (1,), generator=generator, device=device).item())


def _resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False)


def resize_pad(image: Tensor, ratio: float, generator: torch.Generator | None) -> Tensor:
    """One draw for one image ``[1, 3, H, W]``: random resize, random zero-pad, resize back to H x W.

    The size is ``h`` uniform in ``[H, floor(H * (1 + ratio))]`` with the width keeping the aspect;
    the padding fills the largest such size at a uniform random offset.
    """
    _, _, height, width = image.shape
    top_h = math.floor(height * (1.0 + ratio))
    top_w = round(width * top_h / height)
    h = _randint(height, top_h, generator)
    w = min(round(width * h / height), top_w)
    y = _randint(0, top_h - h, generator)
    x = _randint(0, top_w - w, generator)
    padded = F.pad(_resize(image, (h, w)), (x, top_w - w - x, y, top_h - h - y))
    return _resize(padded, (height, width)).clamp(0.0, 1.0)


class ResizePad(InputDefence):
    """Per image: resize by a random factor in [1, 1 + ratio], pad at a random offset, resize back."""

    differentiable = True
    randomized = True

    def __init__(self, ratio: float = 0.1, draws: int = 4) -> None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
            raise AdvbenchError(f"defence 'resize-pad': ratio must be a number in [0, 1], got {ratio!r}")
        self.ratio = float(ratio)
        self.draws = int_param("resize-pad", "draws", draws, 1)

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        check_images("resize-pad", images)
        if len(images) == 0:
            return images.clone()
        return torch.cat([resize_pad(image[None], self.ratio, generator) for image in images])


SPEC = DefenceSpec(
    name="resize-pad",
    description="random resize and pad, resized back (Xie et al., ICLR 2018); EOT for adaptive attacks",
    build=ResizePad,
    defaults={"ratio": 0.1, "draws": 4},
)
