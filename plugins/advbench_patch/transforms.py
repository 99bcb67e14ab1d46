"""Expectation over Transformation draws for a pasted patch (Athalye et al., ICML 2018).

advPattern (Wang et al., ICCV 2019) makes its pattern survive the changes between camera views
(distance, position, lighting) by optimising it over sampled transformations of the pattern. Here a
draw is a small random scale of the patch about its centre, a shift (a fraction of the patch size)
and a brightness gain, all drawn from torch's global generator (the runner seeds each batch), so a
seed gives one sequence of draws. Draw 0 is always the identity: the digital attack is scored on the
untransformed patch.

The transforms act on the patch only: :func:`render` composites the transformed patch over the
clean image with its transformed (bilinear) mask. They are used for the optimisation only; the
attack's returned image pastes the untransformed patch, so nothing leaks outside its rectangle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from advbench_patch.geometry import Rect


@dataclass(frozen=True)
class Draws:
    """``draws`` transformations of each of ``n`` patches, draw-major (row ``d * n + i``)."""

    theta: Tensor  # [D * N, 2, 3] affine sampling grids (output -> input, normalised coordinates)
    gain: Tensor  # [D * N, 1, 1, 1] brightness gains
    identity: bool  # True when every draw is the identity (no resampling needed)


def draw(
    rects: list[Rect],
    size: tuple[int, int],
    draws: int,
    *,
    scale: float = 0.1,
    shift: float = 0.1,
    brightness: float = 0.1,
    device: torch.device | str = "cpu",
) -> Draws:
    """``draws`` transforms per patch: scale in ``1 +- scale``, shift in ``+- shift`` x the patch's
    size, brightness gain in ``1 +- brightness``, uniform; draw 0 is the identity."""
    n, (H, W) = len(rects), size
    total = max(int(draws), 1) * n
    u = torch.rand(total, 4) * 2.0 - 1.0  # global generator, CPU: the same on every device
    u[:n] = 0.0
    s = 1.0 + float(scale) * u[:, 0]
    hw = torch.tensor([[r.w, r.h] for r in rects], dtype=torch.float32).repeat(max(int(draws), 1), 1)
    centre = torch.tensor(
        [[r.left + r.w / 2.0, r.top + r.h / 2.0] for r in rects], dtype=torch.float32
    ).repeat(max(int(draws), 1), 1)
    half = torch.tensor([W / 2.0, H / 2.0])
    c = centre / half - 1.0  # patch centre in normalised coordinates (align_corners=False)
    d = float(shift) * u[:, 1:3] * hw / half  # shift, normalised
    theta = torch.zeros(total, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s
    theta[:, :, 2] = c - (c + d) / s[:, None]
    gain = (1.0 + float(brightness) * u[:, 3]).view(total, 1, 1, 1)
    identity = total == n or (scale == 0 and shift == 0 and brightness == 0)
    return Draws(theta.to(device), gain.to(device), identity)


def render(clean: Tensor, canvas: Tensor, mask: Tensor, draws: Draws) -> Tensor:
    """The clean images with each draw of their patch composited, ``[D * N, 3, H, W]``.

    ``canvas`` is ``[N, 3, H, W]`` holding each patch at its rectangle (zero elsewhere, i.e. the
    patch premultiplied by ``mask``, ``[N, 1, H, W]``).
    """
    repeat = draws.theta.shape[0] // clean.shape[0]
    clean_d = clean.repeat(repeat, 1, 1, 1)
    if draws.identity:
        m = mask.repeat(repeat, 1, 1, 1)
        return clean_d * (1.0 - m) + canvas.repeat(repeat, 1, 1, 1)
    both = torch.cat([canvas, mask], dim=1).repeat(repeat, 1, 1, 1)
    grid = F.affine_grid(draws.theta.to(both.dtype), list(both.shape), align_corners=False)
    moved = F.grid_sample(both, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    patch, m = moved[:, :3], moved[:, 3:]
    patch = torch.minimum(patch * draws.gain.to(patch.dtype), m)  # brightness, kept in [0, m]
    return clean_d * (1.0 - m) + patch
