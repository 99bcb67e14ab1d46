"""Checks of defence parameters shared by the built-in defences."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from advbench.api import AdvbenchError


def int_param(defence: str, name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``, or a one-line error naming the defence and parameter."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise AdvbenchError(f"defence {defence!r}: {name} must be an integer {bound}, got {value!r}")
    return value


def check_images(defence: str, images: Tensor) -> None:
    """Images must be a float batch ``[N, 3, H, W]``; anything else is a caller bug named here."""
    if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise AdvbenchError(
            f"defence {defence!r} takes float images [N, 3, H, W], got {images.dtype} {tuple(images.shape)}"
        )
