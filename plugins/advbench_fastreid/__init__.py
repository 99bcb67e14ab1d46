"""advbench built-in plugin: fast-reid checkpoints as victims, ``fastreid:<model>``, without fast-reid.

fast-reid (https://github.com/JDAI-CV/fast-reid) pins an old torch, so it is not a dependency: its
``Baseline`` network (ResNet-50 / ResNet-50-IBN-a trunk, optional non-local blocks, EmbeddingHead) is
rebuilt here with its exact module names, so ``model_final.pth`` loads strictly with the
``config.yaml`` beside it, and features equal fast-reid's own in eval mode. ``build`` gives an untrained
model of the variant's recipe that advbench can train. Torch-heavy modules are imported inside
``build``/``load`` so that registering the plugin stays cheap. See docs/fastreid.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from advbench import hookimpl
from advbench.api import AdvbenchError, TrainRecipe, Victim, VictimSpec

__version__ = "0.1.0"

MODELS = ("bot-r50", "bot-r50-ibn", "agw-r50", "agw-r50-ibn", "sbs-r50", "sbs-r50-ibn")
DEFAULTS: dict[str, Any] = {"pretrained": False}
LOAD_OPTIONS = ("config", "resize")
"""``--victim-param fastreid:<model>.KEY=VALUE`` keys that only a loaded checkpoint takes."""


def _unknown(params: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    if params:
        raise AdvbenchError(
            f"fastreid: unknown {what} option(s) {', '.join(sorted(params))}; known: {', '.join(allowed)}"
        )


def build_fastreid(
    num_classes: int,
    input_size: tuple[int, int] = (256, 128),
    variant: str | None = None,
    pretrained: bool | str = False,
    **params: Any,
) -> Victim:
    """Untrained ``variant`` with a ``num_classes``-way classifier, running at the dataset's ``input_size``
    (its config's ``size_test``, so that a saved config.yaml reloads it as it was)."""
    from advbench_fastreid.imagenet import init_backbone
    from advbench_fastreid.model import FastReidVictim
    from advbench_fastreid.variants import variant_config

    _unknown(params, tuple(DEFAULTS), "build")
    cfg = dataclasses.replace(variant_config(variant), size_test=(int(input_size[0]), int(input_size[1])))
    victim = FastReidVictim(cfg, input_size=input_size, classifier_rows=num_classes, num_classes=num_classes)
    victim.init = init_backbone(victim.backbone, pretrained, with_ibn=cfg.with_ibn)
    return victim


def load_fastreid(
    path: Path,
    input_size: tuple[int, int] = (256, 128),
    num_classes: int = 0,
    variant: str | None = None,
    config: str | None = None,
    resize: bool = True,
    pretrained: bool | str = False,
    **params: Any,
) -> Victim:
    """A fast-reid ``model_final.pth`` with its ``config.yaml``, loaded strictly (``pretrained`` ignored:
    the checkpoint has every weight)."""
    from advbench_fastreid.checkpoint import load_checkpoint
    from advbench_fastreid.variants import variant_config

    del pretrained
    _unknown(params, (*DEFAULTS, *LOAD_OPTIONS), "loader")
    variant_config(variant)
    if not isinstance(resize, bool):
        raise AdvbenchError(f"fastreid: resize must be true or false, got {resize!r}")
    return load_checkpoint(
        path,
        input_size=input_size,
        num_classes=num_classes,
        variant=str(variant),
        config=config,
        resize=resize,
    )


@hookimpl
def advbench_victims() -> list[VictimSpec]:
    return [
        VictimSpec(
            name="fastreid",
            description="fast-reid BoT / AGW / SBS on ResNet-50(-IBN) as fastreid:<model>; loads model_final.pth + config.yaml",
            build=build_fastreid,
            load=load_fastreid,
            defaults=dict(DEFAULTS),
            # GPU-sized, not measured: 4,000 steps of 16x4 ≈ 20 epochs of Market-1501.
            recipe=TrainRecipe(steps=4000, batch_p=16, batch_k=4, lr=3.5e-4, warmup_steps=200),
            variant=True,
            version=__version__,
            variants=MODELS,
        )
    ]
