"""torchattacks against re-ID embeddings, plus a feature-space PGD.

torchattacks attacks classifiers. A victim becomes a classifier through
:class:`advbench_torchattacks.wrapper.PrototypeClassifier`: its logits score a query against the
identity prototypes of the clean gallery (the retrieval index a white-box attacker knows), so the
untargeted loss pushes each query away from its own identity. FGSM, PGD, MI-FGSM and the feature
PGD are named attacks (in ``--attacks all``); every other L∞ torchattacks attack that works
through the wrapper is reachable as ``torchattacks:<Name>`` (e.g. ``torchattacks:APGD``).
"""

from __future__ import annotations

from typing import Any

from advbench import hookimpl
from advbench.api import AttackSpec

__version__ = "0.1.0"

# Named attacks: advbench name -> (torchattacks class, description, extra defaults).
NAMED: dict[str, tuple[str, str, dict[str, Any]]] = {
    "fgsm": ("FGSM", "FGSM (Goodfellow et al. 2015), one signed-gradient step, torchattacks", {}),
    "pgd": (
        "PGD",
        "PGD-10 (Madry et al. 2018), alpha 2.5*eps/steps, random start, torchattacks",
        {"steps": 10},
    ),
    "mifgsm": (
        "MIFGSM",
        "MI-FGSM (Dong et al. 2018), momentum 1.0, 10 steps, a transfer attack, torchattacks",
        {"steps": 10},
    ),
}


def _named(cls_name: str):
    def build(eps: float = 16.0, **params: Any):
        from advbench_torchattacks.attacks import TorchattacksAttack

        return TorchattacksAttack(cls_name, eps=eps, **params)

    return build


def _family(eps: float = 16.0, variant: str = "", **params: Any):
    from advbench_torchattacks.attacks import TorchattacksAttack

    return TorchattacksAttack(variant, eps=eps, **params)


def _feature_pgd(eps: float = 16.0, **params: Any):
    from advbench_torchattacks.attacks import FeaturePGD

    return FeaturePGD(eps=eps, **params)


@hookimpl
def advbench_attacks() -> list[AttackSpec]:
    from advbench_torchattacks.catalog import SUPPORTED

    specs = [
        AttackSpec(
            name=name,
            description=desc,
            build=_named(cls),
            defaults=defaults,
            default=True,
            version=__version__,
        )
        for name, (cls, desc, defaults) in NAMED.items()
    ]
    specs.append(
        AttackSpec(
            name="feature-pgd",
            description="PGD-10 on the embedding itself: maximise 1 - cos(f(x_adv), f(x)); needs no labels",
            build=_feature_pgd,
            defaults={"steps": 10, "random_start": True},
            default=True,
            version=__version__,
        )
    )
    specs.append(
        AttackSpec(
            name="torchattacks",
            description=f"any L∞ torchattacks attack as torchattacks:<Name>: {', '.join(sorted(SUPPORTED))}",
            build=_family,
            default=False,
            variant=True,
            version=__version__,
        )
    )
    return specs
