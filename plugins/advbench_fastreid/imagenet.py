"""ImageNet initialisation of the backbone from a file already on this machine; never downloads.

fast-reid starts its ResNets from torchvision's ImageNet weights and its IBN-a ResNets from IBN-Net's
releases (https://github.com/XingangPan/IBN-Net); both use the module names of
:class:`~advbench_fastreid.backbone.ResNetBackbone`, so the file loads strictly apart from the ImageNet
classifier (``fc.*``, dropped) and the non-local blocks (not in it, kept at their zero-residual init).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from advbench.api import AdvbenchError
from advbench.statedict import read_torch_file, strict_load, strip_prefix
from advbench_fastreid.backbone import ResNetBackbone

FILES = {
    False: ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth", "resnet50-19c8e357.pth"),
    True: ("resnet50_ibn_a-d9d0bb7b.pth",),
}
"""File names torchvision / IBN-Net / fast-reid give the ResNet-50 ImageNet weights."""


def local_file(with_ibn: bool) -> Path | None:
    """The first of :data:`FILES` in ``$ADVBENCH_WEIGHTS`` or torch's hub cache, or None."""
    folders = [Path(os.environ["ADVBENCH_WEIGHTS"])] if os.environ.get("ADVBENCH_WEIGHTS") else []
    folders.append(Path(torch.hub.get_dir()) / "checkpoints")
    for folder in folders:
        for name in FILES[with_ibn]:
            if (folder / name).is_file():
                return folder / name
    return None


def init_backbone(backbone: ResNetBackbone, pretrained: bool | str, *, with_ibn: bool) -> str:
    """Load ImageNet weights into ``backbone`` per ``pretrained`` (False, True or a path); returns
    ``"scratch"`` or ``"imagenet:<file name>"`` for records."""
    if pretrained in (False, None, "false", "False", ""):
        return "scratch"
    if pretrained in (True, "true", "True"):
        path = local_file(with_ibn)
        if path is None:
            where = Path(torch.hub.get_dir()) / "checkpoints" / FILES[with_ibn][0]
            raise AdvbenchError(
                f"fastreid: no local ImageNet weights for ResNet-50{'-IBN-a' if with_ibn else ''}; "
                f"put {FILES[with_ibn][0]} at {where} or in $ADVBENCH_WEIGHTS, or pass pretrained=PATH "
                "(advbench never downloads)"
            )
    elif isinstance(pretrained, str | Path):
        path = Path(pretrained).expanduser()
    else:
        raise AdvbenchError(f"fastreid: pretrained must be false, true or a file path, got {pretrained!r}")
    state = strip_prefix(read_torch_file(path, who="fastreid"), "module.")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    optional = [k for k in backbone.state_dict() if k.startswith("NL_")]
    strict_load(
        backbone, state, source=str(path), what="ResNet-50 backbone", who="fastreid", optional=optional
    )
    return f"imagenet:{path.name}"
