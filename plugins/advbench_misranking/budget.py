"""Turning the generator's raw output into a perturbation inside the L∞ budget, in pixel space.

Two ways, both giving ``|δ| <= eps`` exactly in the forward pass:

* ``tanh``: ``δ = eps * tanh(h)``; fully differentiable, the gradient is scaled by ``eps * (1 - tanh²)``.
* ``st``: ``g = tanh(h)``, then each (image, channel) is rescaled so that its largest magnitude is at most
  eps (``g * min(1, eps / max|g|)``, the official recipe); the backward pass treats the whole map as the
  identity ``dδ/dh = 1`` (a straight-through estimator, which is what the official in-place ``.data``
  edits amount to).
"""

from __future__ import annotations

import torch
from torch import Tensor

from advbench_misranking.config import Bound


def bound_perturbation(raw: Tensor, eps: float, mode: Bound = "tanh") -> Tensor:
    """Perturbation ``[N, C, H, W]`` with ``|δ| <= eps`` (eps in [0, 1] pixel units) from raw output ``h``."""
    if mode == "tanh":
        return eps * torch.tanh(raw)
    if mode == "st":
        g = torch.tanh(raw)
        peak = g.detach().abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        value = (g.detach() * (eps / peak).clamp(max=1.0)).clamp(-eps, eps)
        return value + (raw - raw.detach())  # forward: exactly ``value``; backward: identity
    raise ValueError(f"unknown bound mode {mode!r}")
