"""advbench built-in plugin: the Mis-Ranking GAN attack (Wang et al., CVPR 2020).

A spectral-norm ResNet generator trained against a source re-ID victim with a mis-ranking
(inverted hardest triplet) loss, a least-likely-class loss, a multi-stage discriminator and an MS-SSIM
perception loss; optionally confined to k pixels by a learned Gumbel top-k mask. Heavy modules are
imported only when the attack is built, so the hook stays cheap. See
:mod:`advbench_misranking.attack` for the deviations from the official code and docs/misranking.md for
their reasons and the measured figures.
"""

from __future__ import annotations

from typing import Any

from advbench import hookimpl
from advbench.api import Attack, AttackSpec
from advbench_misranking.config import default_params

__version__ = "1.1.0"  # 1.1.0: fits follow the run's --seed (1.0.0 always used seed 0)


def build(eps: float = 16.0, **params: Any) -> Attack:
    """Build a :class:`~advbench_misranking.attack.MisRankingAttack` (imports torch-heavy modules lazily)."""
    from advbench_misranking.attack import MisRankingAttack

    return MisRankingAttack(eps, **params)


@hookimpl
def advbench_attacks() -> list[AttackSpec]:
    return [
        AttackSpec(
            name="misranking",
            description="Mis-Ranking GAN (Wang et al. CVPR 2020): generator fitted on the train split, "
            "one forward pass per query batch; k=N confines it to N pixels",
            build=build,
            defaults=default_params(),
            default=True,
            threat_model="white-box fit on the source victim's train split, feed-forward at test; L∞",
            version=__version__,
        )
    ]
