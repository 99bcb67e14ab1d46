"""The hook implementations: what the ``advbench`` entry point of this package registers.

One function per plugin kind, each returning specs (see :mod:`advbench.hookspecs`). They only build
spec objects, so ``advbench plugins`` stays fast.
"""

from __future__ import annotations

from advbench import hookimpl
from advbench.api import AttackSpec, DatasetSpec, TrainRecipe, VictimSpec
from advbench_example import __version__, dataset, victim
from advbench_example.attacks import UAP_DEFAULTS, RandomSign, UniversalPerturbation


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
        ),
        AttackSpec(
            name="uap",
            description="universal adversarial perturbation (Moosavi-Dezfooli et al. CVPR 2017): "
            "one delta for every query, fitted on the source victim's train split",
            build=UniversalPerturbation,
            defaults=UAP_DEFAULTS,
            default=False,
            threat_model="white-box fit on the source victim's train split, image-agnostic at test; L∞",
            version=__version__,
        ),
    ]


@hookimpl
def advbench_victims() -> list[VictimSpec]:
    return [
        VictimSpec(
            name="tiny-cnn",
            description="the example's own 3-block CNN (32k params) with a BNNeck head, cosine distance",
            build=victim.build,
            defaults=victim.DEFAULTS,
            recipe=TrainRecipe(steps=200),
            default=False,
            version=__version__,
        )
    ]


@hookimpl
def advbench_datasets() -> list[DatasetSpec]:
    return [dataset.SPEC]
