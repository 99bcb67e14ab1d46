"""advbench-example: a third-party plugin adding the ``random-sign`` noise baseline."""

from __future__ import annotations

import torch
from torch import Tensor

from advbench import hookimpl
from advbench.api import Attack, AttackSpec, FeatureBank, Victim

__version__ = "0.1.0"


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


@hookimpl
def advbench_attacks() -> list[AttackSpec]:
    return [
        AttackSpec(
            name="random-sign",
            description="random ±eps noise on every pixel: the baseline an attack must beat",
            build=RandomSign,
            default=False,
            threat_model="none (random)",
            version=__version__,
        )
    ]
