"""The example attacks: ``random-sign`` (a noise baseline) and ``uap`` (an attack that learns in ``fit``).

``uap`` follows the idea of Moosavi-Dezfooli et al., "Universal adversarial perturbations" (CVPR
2017): one image-agnostic perturbation δ ``[3, H, W]`` fooling the model on most inputs. Instead of
their DeepFool-based iteration it takes signed-gradient steps on mini-batches of the source victim's
train split, pushing adversarial features away from the clean ones (a re-ID model has no classes at
test time, so the feature distance is the loss). What it learns is cached as ``<cache_dir>/<key>.pt``
(written atomically with a SHA-256 sidecar by :mod:`advbench.io`) and reloaded by every later fit
with the same key, as the :class:`~advbench.api.Attack` contract asks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advbench.api import AdvbenchError, Attack, FeatureBank, ImageSplit, Victim
from advbench.io import atomic_torch_save, load_torch_verified

FORMAT = 1
UAP_DEFAULTS: dict[str, Any] = {"steps": 20, "batch_size": 32, "alpha": None}


class RandomSign(Attack):
    """x + eps * s with s uniform in {-1, +1} per pixel and channel: noise at the full L∞ budget."""

    name = "random-sign"

    def perturb(
        self,
        victim: Victim,
        images: Tensor,
        pids: Tensor,
        camids: Tensor,
        *,
        gallery: FeatureBank | None = None,
    ) -> Tensor:
        signs = torch.randint(0, 2, images.shape, device=images.device).mul(2).sub(1)
        return (images + self.eps / 255.0 * signs).clamp(0, 1)


def feature_distance(victim: Victim, adv: Tensor, clean: Tensor) -> Tensor:
    """Per-image distance between features under the victim's own metric (what retrieval ranks by)."""
    if victim.distance == "cosine":
        return 1.0 - F.cosine_similarity(adv, clean, dim=1)
    return (adv - clean).norm(dim=1)


def learn_uap(
    victim: Victim,
    train: ImageSplit,
    *,
    eps: float,
    steps: int,
    batch_size: int,
    alpha: float,
    device: torch.device,
    generator: torch.Generator,
) -> Tensor:
    """A universal δ ``[3, H, W]`` with ``|δ| <= eps`` (all in [0, 1] units) learnt by signed ascent.

    Starts from uniform noise in the ball: at δ = 0 the cosine distance sits at its minimum, where
    its gradient vanishes and a signed step would never move.
    """
    _, c, h, w = train.images.shape
    delta = (torch.rand((c, h, w), generator=generator) * 2 - 1).mul_(eps).to(device)
    n = len(train)
    for _ in range(steps):
        idx = torch.randint(n, (min(batch_size, n),), generator=generator)
        images = train.batch(idx, device)
        with torch.no_grad():
            clean = victim.features(images)
        delta.requires_grad_(True)
        loss = feature_distance(victim, victim.features((images + delta).clamp(0, 1)), clean).mean()
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + alpha * grad.sign()).clamp_(-eps, eps)
    return delta.detach().cpu()


class UniversalPerturbation(Attack):
    """One learnt perturbation added to every query: a feed-forward attack with no per-image cost.

    Params: ``steps`` mini-batch ascent steps, ``batch_size`` train images per step, ``alpha`` step
    size in 1/255 units (default ``2.5 * eps / steps``, as PGD's usual choice).
    """

    name = "uap"

    def __init__(self, eps: float = 16.0, **params: Any) -> None:
        unknown = sorted(set(params) - set(UAP_DEFAULTS))
        if unknown:
            raise AdvbenchError(f"uap has no parameter {unknown[0]!r}; valid: {', '.join(UAP_DEFAULTS)}")
        super().__init__(eps, **{**UAP_DEFAULTS, **params})
        self.steps = int(self.params["steps"])
        self.batch_size = int(self.params["batch_size"])
        alpha = self.params["alpha"]
        self.alpha = 2.5 * self.eps / max(self.steps, 1) if alpha is None else float(alpha)
        self.delta: Tensor | None = None
        self.loaded_from_cache = False

    def settings(self) -> dict[str, float]:
        """What the learnt δ depends on besides victim and data: checked when a cache entry is loaded."""
        return {"eps": self.eps, "steps": self.steps, "batch_size": self.batch_size, "alpha": self.alpha}

    def fit(
        self,
        victim: Victim,
        train: ImageSplit,
        *,
        cache_dir: Path,
        key: str,
        device: torch.device,
        progress: bool = True,
    ) -> None:
        """Load ``cache_dir / f"{key}.pt"`` when it is there and intact, else learn δ and save it there."""
        path = Path(cache_dir) / f"{key}.pt"
        state = load_torch_verified(path)
        if state is not None:
            if state.get("format") != FORMAT or state.get("settings") != self.settings():
                raise AdvbenchError(f"uap cache {path} was written for other parameters; delete it to refit")
            self.delta, self.loaded_from_cache = state["delta"], True
            return
        generator = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, ())))  # the runner seeds torch
        self.delta = learn_uap(
            victim,
            train,
            eps=self.eps / 255.0,
            steps=self.steps,
            batch_size=self.batch_size,
            alpha=self.alpha / 255.0,
            device=device,
            generator=generator,
        )
        self.loaded_from_cache = False
        atomic_torch_save({"format": FORMAT, "settings": self.settings(), "delta": self.delta}, path)

    @torch.no_grad()
    def perturb(
        self,
        victim: Victim,
        images: Tensor,
        pids: Tensor,
        camids: Tensor,
        *,
        gallery: FeatureBank | None = None,
    ) -> Tensor:
        """``images + δ`` clipped to [0, 1]; δ is resized when the queries have another size than the fit."""
        if self.delta is None:
            raise AdvbenchError("uap: fit() must run before perturb()")
        delta = self.delta.to(images.device, images.dtype)
        if delta.shape[-2:] != images.shape[-2:]:
            delta = F.interpolate(delta[None], size=images.shape[-2:], mode="bilinear", align_corners=False)[
                0
            ]
        eps = self.eps / 255.0
        return (images + delta.clamp(-eps, eps)).clamp(0.0, 1.0)
