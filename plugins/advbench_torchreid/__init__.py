"""advbench built-in plugin: torchreid (deep-person-reid) models as victims, ``torchreid:<arch>``.

Every architecture of torchreid's model factory (Zhou & Xiang, deep-person-reid,
https://github.com/KaiyangZhou/deep-person-reid; OSNet: Zhou et al., "Omni-Scale Feature Learning
for Person Re-Identification", ICCV 2019) is a variant of the ``torchreid`` family, built with
torchreid's own ``build_model``. A variant loads a checkpoint written by torchreid's
``save_checkpoint`` strictly (``--victim-weights torchreid:osnet_x1_0=PATH/model.pth.tar-250``) or is
trained by advbench like a timm victim. torchreid is the optional extra ``[torchreid]``; nothing here
imports it at registration, so ``advbench plugins`` stays cheap without it. See docs/torchreid.md.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from advbench import hookimpl
from advbench.api import AdvbenchError, TrainRecipe, Victim, VictimSpec
from advbench_torchreid.extra import INSTALL_HINT, require_torchreid  # noqa: F401  (importable from here)

__version__ = "0.1.0"

ARCHS: tuple[str, ...] = (
    # image classification backbones
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnet50_fc512",
    "se_resnet50",
    "se_resnet50_fc512",
    "se_resnet101",
    "se_resnext50_32x4d",
    "se_resnext101_32x4d",
    "densenet121",
    "densenet169",
    "densenet201",
    "densenet161",
    "densenet121_fc512",
    "inceptionresnetv2",
    "inceptionv4",
    "xception",
    "resnet50_ibn_a",
    "resnet50_ibn_b",
    # lightweight models ("nasnsetmobile" is torchreid's own spelling of its factory key)
    "nasnsetmobile",
    "mobilenetv2_x1_0",
    "mobilenetv2_x1_4",
    "shufflenet",
    "squeezenet1_0",
    "squeezenet1_0_fc512",
    "squeezenet1_1",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
    # re-ID models
    "mudeep",
    "resnet50mid",
    "hacnn",
    "pcb_p6",
    "pcb_p4",
    "mlfn",
    "osnet_x1_0",
    "osnet_x0_75",
    "osnet_x0_5",
    "osnet_x0_25",
    "osnet_ibn_x1_0",
    "osnet_ain_x1_0",
    "osnet_ain_x0_75",
    "osnet_ain_x0_5",
    "osnet_ain_x0_25",
)
"""torchreid 0.2.5's ``models.__model_factory``, in its order: every one returns an embedding in eval
mode and ``(logits, embedding)`` in train mode with ``loss='triplet'`` (tests/test_torchreid.py checks
this list against the installed factory)."""

DEFAULTS: dict[str, Any] = {"metric": "euclidean", "image_size": "auto", "pretrained": False}
"""``metric``: the distance torchreid's engine evaluates with (``euclidean``: squared euclidean on the
raw features, its default; or ``cosine``). ``image_size``: the size the network sees, ``HxW`` or
``auto`` (the dataset's crop size when advbench trains it, torchreid's 256x128 for a checkpoint; HACNN
is always 160x64); other sizes are resized inside the victim. ``pretrained``: ImageNet initialisation
from a local file only (False, True, auto or a path; never downloaded)."""


def check_arch(variant: str | None) -> str:
    """``variant`` if it is a torchreid architecture, else one line naming the close ones."""
    if not variant:
        raise AdvbenchError("torchreid is a family: name an architecture, e.g. torchreid:osnet_x1_0")
    models = require_torchreid(f"torchreid:{variant}")
    known = list(models.__dict__["__model_factory"])
    if variant not in known:
        close = difflib.get_close_matches(variant, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise AdvbenchError(
            f"torchreid has no architecture {variant!r}.{hint} See `advbench plugins` for the list"
        )
    return variant


def build_torchreid(
    num_classes: int, input_size: tuple[int, int] = (256, 128), variant: str | None = None, **params: Any
) -> Victim:
    """An untrained ``torchreid:<variant>`` for a dataset of ``num_classes`` train ids."""
    arch = check_arch(variant)
    from advbench_torchreid.model import TorchreidVictim

    return TorchreidVictim(arch, num_classes=num_classes, input_size=input_size, **params)


def load_torchreid(
    path: Path,
    input_size: tuple[int, int] = (256, 128),
    num_classes: int = 0,
    variant: str | None = None,
    **params: Any,
) -> Victim:
    """``torchreid:<variant>`` from a torchreid checkpoint (``save_checkpoint`` dict or bare state dict)."""
    arch = check_arch(variant)
    from advbench_torchreid.checkpoint import load_checkpoint

    return load_checkpoint(Path(path), arch, input_size=input_size, num_classes=num_classes, **params)


@hookimpl
def advbench_victims() -> list[VictimSpec]:
    return [
        VictimSpec(
            name="torchreid",
            description=(
                "any torchreid (deep-person-reid) model as torchreid:<arch> (e.g. torchreid:osnet_x1_0); "
                "loads torchreid checkpoints strictly; needs the [torchreid] extra"
            ),
            build=build_torchreid,
            load=load_torchreid,
            defaults=dict(DEFAULTS),
            # CPU-sized, as timm:<any>: from scratch at the dataset's crop size.
            recipe=TrainRecipe(steps=600, lr=1e-3),
            variant=True,
            version=__version__,
            variants=ARCHS,
        )
    ]
