"""What the ranking and metric attacks share: features, the gallery bank, target rows, building."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advbench.api import AdvbenchError, Attack, FeatureBank, Targets, Victim

GOALS = ("targeted", "demote")


def _features(victim: Victim, images: Tensor) -> Tensor:
    return victim.features(images).float()


def _gallery(name: str, gallery: FeatureBank | None, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(features float32, pids, camids) of the gallery on ``device``, or a one-line error."""
    if gallery is None or len(gallery.features) == 0:
        raise AdvbenchError(f"{name} needs the source victim's gallery features (gallery=FeatureBank)")
    return (
        gallery.features.to(device).float(),
        gallery.pids.to(device),
        gallery.camids.to(device),
    )


def _target_rows(
    name: str, targets: Targets | None, batch: int, n_gallery: int, device: torch.device
) -> Tensor:
    """The ``[B, k]`` candidate rows of ``targets``, checked, or a one-line error."""
    if targets is None:
        raise AdvbenchError(
            f"{name} is a targeted/demote attack and needs targets=Targets(goal, indices [B, k])"
        )
    if targets.goal not in GOALS:
        raise AdvbenchError(f"{name} needs a targets goal of 'targeted' or 'demote', got {targets.goal!r}")
    rows = torch.as_tensor(targets.indices).to(device)
    if rows.ndim != 2 or rows.shape[0] != batch or rows.shape[1] < 1:
        raise AdvbenchError(f"{name} needs target indices [B={batch}, k>=1], got shape {tuple(rows.shape)}")
    if rows.is_floating_point() or int(rows.min()) < 0 or int(rows.max()) >= n_gallery:
        raise AdvbenchError(
            f"{name}: target indices must be integer rows of the gallery (0..{n_gallery - 1})"
        )
    return rows.long()


# ------------------------------------------------------------------------------- ranking attacks


def build(cls: type, eps: float, params: dict[str, Any]) -> Attack:
    """``cls(eps=eps, **params)``, with unknown parameters reported on one line."""
    try:
        return cls(eps=eps, **params)
    except TypeError as exc:
        raise AdvbenchError(f"{getattr(cls, 'name', cls.__name__)}: {exc}") from exc
