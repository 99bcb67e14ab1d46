"""Any timm backbone as a re-ID victim: backbone, global pooling, BNNeck, linear ID head.

Three small models of different families are the embedded default (a ResNet, a MobileNet and a
ViT), each with a step budget that reaches about 58-75 mAP on the synthetic dataset in two to four
minutes on two CPU cores. Any other timm model is reachable as ``timm:<model_name>``.
"""

from __future__ import annotations

from typing import Any

from advbench import hookimpl
from advbench.api import TrainRecipe, VictimSpec

__version__ = "0.1.0"

# name -> (description, training steps). Step budgets: the smallest that keep clean mAP near 60-75 on
# the synthetic default (measured curves: resnet10t 64/69/81 mAP at 200/250/400 steps, mobilenetv3
# 48/61/67/74 at 400/500/600/800, ViT 57/68/68 at 400/500/600), so that `advbench run --attacks all
# --victims all` fits 15 minutes on 2 CPU cores. See docs/synthetic.md.
DEFAULT_MODELS: dict[str, tuple[str, int]] = {
    "resnet10t": ("ResNet-10-T (timm), 4.9M params", 250),
    "mobilenetv3_small_100": ("MobileNetV3-Small 1.0 (timm), 1.5M params", 500),
    "vit_tiny_patch16_224": ("ViT-Tiny/16 (timm) at the dataset's crop size, 5.5M params", 400),
}


def _build(model_name: str):
    def build(num_classes: int, input_size: tuple[int, int], **params: Any):
        from advbench_timm.model import TimmReid

        return TimmReid(model_name, num_classes=num_classes, input_size=input_size, **params)

    return build


def _build_variant(num_classes: int, input_size: tuple[int, int], variant: str, **params: Any):
    from advbench_timm.model import TimmReid

    return TimmReid(variant, num_classes=num_classes, input_size=input_size, **params)


@hookimpl
def advbench_victims() -> list[VictimSpec]:
    specs = [
        VictimSpec(
            name=name,
            description=f"{desc}; BNNeck re-ID head, cosine distance",
            build=_build(name),
            defaults={"pretrained": "auto"},
            recipe=TrainRecipe(steps=steps),
            default=True,
            version=__version__,
        )
        for name, (desc, steps) in DEFAULT_MODELS.items()
    ]
    specs.append(
        VictimSpec(
            name="timm",
            description="any timm model as timm:<model_name> (e.g. timm:resnet50); BNNeck re-ID head",
            build=_build_variant,
            defaults={"pretrained": "auto"},
            recipe=TrainRecipe(steps=600),
            variant=True,
            version=__version__,
        )
    )
    return specs
