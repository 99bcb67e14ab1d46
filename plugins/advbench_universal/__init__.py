"""advbench built-in plugin: universal query perturbations for retrieval (issue 17).

``uap-retrieval``: Li et al., "Universal Perturbation Attack Against Image Retrieval" (ICCV 2019), a
universal adversarial perturbation (Moosavi-Dezfooli et al., CVPR 2017) that breaks the neighbourhood
structure of the victim's features: fitted once on the source victim's train split (or, with
``--fit-on``, another dataset's of the same crop size), then added to every query. Torch-heavy modules
are imported only when the attack is built. See :mod:`advbench_universal.attack` for the deviations.
"""

from __future__ import annotations

from typing import Any

from advbench import hookimpl
from advbench.api import Attack, AttackSpec
from advbench_universal.config import default_params

__version__ = "1.0.0"


def build(eps: float = 16.0, **params: Any) -> Attack:
    """Build a :class:`~advbench_universal.attack.UniversalRetrievalAttack` (imports torch lazily)."""
    from advbench_universal.attack import UniversalRetrievalAttack

    return UniversalRetrievalAttack(eps, **params)


@hookimpl
def advbench_attacks() -> list[AttackSpec]:
    return [
        AttackSpec(
            name="uap-retrieval",
            description="universal query perturbation for retrieval (Li et al. ICCV 2019): one δ fitted "
            "on the train split by breaking k-means neighbourhoods (loss=pair|list|point|label)",
            build=build,
            defaults=default_params(),
            default=False,
            threat_model="white-box fit on the source victim's train split, image-agnostic at test; L∞",
            version=__version__,
        )
    ]
