"""advbench built-in plugin: DG-Net (Zheng et al., CVPR 2019) re-ID module as a victim.

``dgnet`` is the official ResNet-50 appearance encoder (``ft_netAB``): it loads the released
``id_00100000.pt`` + ``config.yaml`` strictly and can be trained here. ``dgnet-r18`` is the same
model on a ResNet-18 trunk, small enough to train on CPU for the embedded default; it is not an
official DG-Net and has no official checkpoint. Torch-heavy modules are imported inside
``build``/``load`` so that registering the plugin stays cheap. See docs/dgnet.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advbench import hookimpl
from advbench.api import TrainRecipe, Victim, VictimSpec

__version__ = "0.1.0"

DEFAULTS: dict[str, Any] = {
    "stride": 1,
    "pool": "max",
    "droprate": 0.5,
    "droprate_fine": 0.75,
    "fine_grained_weight": 0.5,
    "pretrained": False,
}
"""Official re-ID settings (configs/latest.yaml: ID_stride 1, pool max; heads' dropout 0.5/0.75; β 0.5)."""


def build_dgnet(num_classes: int, input_size: tuple[int, int] = (256, 128), **params: Any) -> Victim:
    """Untrained DG-Net re-ID model on a ResNet-50 trunk (the official architecture)."""
    from advbench_dgnet.model import build

    return build(num_classes, input_size, backbone="resnet50", **params)


def build_dgnet_r18(num_classes: int, input_size: tuple[int, int] = (256, 128), **params: Any) -> Victim:
    """Untrained DG-Net-shaped re-ID model on a ResNet-18 trunk (CPU-sized; not official)."""
    from advbench_dgnet.model import build

    return build(num_classes, input_size, backbone="resnet18", **params)


def load_dgnet(
    path: Path, input_size: tuple[int, int] = (256, 128), num_classes: int | None = None, **params: Any
) -> Victim:
    """Official DG-Net ``id_*.pt`` (``{'a': state_dict}``) with its ``config.yaml``, loaded strictly."""
    from advbench_dgnet.official import load_official

    return load_official(path, input_size, backbone="resnet50", **params)


def load_dgnet_r18(
    path: Path, input_size: tuple[int, int] = (256, 128), num_classes: int | None = None, **params: Any
) -> Victim:
    """A ``dgnet-r18`` state dict saved in the official format (``{'a': ...}`` + ``config.yaml``)."""
    from advbench_dgnet.official import load_official

    return load_official(path, input_size, backbone="resnet18", **params)


@hookimpl
def advbench_victims() -> list[VictimSpec]:
    return [
        VictimSpec(
            name="dgnet",
            description="DG-Net re-ID module (ResNet-50 ft_netAB, 2 heads, flip TTA, 1024-d); loads official id_*.pt",
            build=build_dgnet,
            load=load_dgnet,
            defaults=dict(DEFAULTS),
            # GPU-sized; not measured. 4,000 steps of 16x4 ≈ 20 epochs of Market-1501.
            recipe=TrainRecipe(steps=4000, batch_p=16, batch_k=4, lr=3.5e-4, warmup_steps=200),
            version="1",
        ),
        VictimSpec(
            name="dgnet-r18",
            description="DG-Net-shaped re-ID model on ResNet-18 (not official; CPU-sized), 1024-d feature",
            build=build_dgnet_r18,
            load=load_dgnet_r18,
            defaults=dict(DEFAULTS),
            # ~1.15 s/step at 128x64 on 2 idle CPU threads; synthetic seed 0: 86.0 mAP, 91.0 rank-1.
            recipe=TrainRecipe(steps=200, batch_p=16, batch_k=4, lr=1e-3, warmup_steps=20),
            # Not in the default grid: ~4 min of training plus flip-TTA attacks would break the
            # 15-minute CPU budget. `advbench train --victim dgnet-r18` adds it to `--victims all`.
            default=False,
            version="1",
        ),
    ]
