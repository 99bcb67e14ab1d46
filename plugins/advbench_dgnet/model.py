"""DG-Net's re-ID module (the appearance encoder ``ft_netAB``) as an advbench victim.

Module names follow the official ``reIDmodel.py`` so that ``state_dict()`` of a ResNet-50
:class:`DGNetVictim` has exactly the keys of an official ``id_*.pt`` (338 for 751 ids):
``model.*`` is a torchvision ResNet (its unused ``fc`` included), ``classifier1`` / ``classifier2``
are the primary and fine-grained heads (``add_block`` = Linear→BN1d→Dropout, ``classifier`` =
Linear). Pools and dropout carry no weights, so ``pool`` and ``stride`` change behaviour, not keys.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advbench.api import AdvbenchError, Victim

Backbone = Literal["resnet50", "resnet18"]
Pool = Literal["max", "avg"]
BACKBONES: dict[str, int] = {"resnet50": 2048, "resnet18": 512}
"""Backbone name -> channels of ``layer4`` (the pooled vector the heads read)."""
EMBED_DIM = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ClassBlock(nn.Module):
    """One ID head: ``add_block`` (Linear→BatchNorm1d→Dropout, no ReLU) then ``classifier`` (Linear)."""

    def __init__(self, in_dim: int, num_classes: int, droprate: float) -> None:
        super().__init__()
        self.add_block = nn.Sequential(
            nn.Linear(in_dim, EMBED_DIM), nn.BatchNorm1d(EMBED_DIM), nn.Dropout(droprate)
        )
        self.classifier = nn.Sequential(nn.Linear(EMBED_DIM, num_classes))
        # Initialisation as described for the official heads: Kaiming (fan_out) for the
        # bottleneck Linear, N(0, 0.001) for the classifier, zero biases, BN at identity.
        nn.init.kaiming_normal_(self.add_block[0].weight, a=0.0, mode="fan_out")
        nn.init.zeros_(self.add_block[0].bias)
        nn.init.ones_(self.add_block[1].weight)
        nn.init.zeros_(self.add_block[1].bias)
        nn.init.normal_(self.classifier[0].weight, std=0.001)
        nn.init.zeros_(self.classifier[0].bias)

    def parts(self, pooled: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(Linear output before BN, 512-d BN output = the test embedding, identity logits)."""
        lin = self.add_block[0](pooled)
        emb = self.add_block[1](lin)
        logits = self.classifier(self.add_block[2](emb))
        return lin, emb, logits

    def forward(self, pooled: Tensor) -> Tensor:
        return self.classifier(self.add_block(pooled))


def make_trunk(backbone: str, stride: int, pool: str) -> nn.Module:
    """A torchvision ResNet without weights, last stride ``stride``, ``pool`` global/part pooling.

    As in the official code, ``avgpool`` becomes a global *max* pool when ``pool == "max"``, and
    ``partpool`` (4 horizontal stripes, DG-Net's appearance code) is attached to the trunk.
    """
    from torchvision import models

    if backbone not in BACKBONES:
        raise AdvbenchError(f"dgnet: unknown backbone {backbone!r}; known: {', '.join(BACKBONES)}")
    if stride not in (1, 2):
        raise AdvbenchError(f"dgnet: last stride must be 1 or 2, got {stride!r}")
    if pool not in ("max", "avg"):
        raise AdvbenchError(f"dgnet: pool must be 'max' or 'avg', got {pool!r}")
    net = models.resnet50(weights=None) if backbone == "resnet50" else models.resnet18(weights=None)
    if stride == 1:
        block = net.layer4[0]
        # torchvision puts the stride in conv2 of a Bottleneck (ResNet v1.5), conv1 of a BasicBlock.
        strided = block.conv2 if backbone == "resnet50" else block.conv1
        strided.stride = (1, 1)
        block.downsample[0].stride = (1, 1)
    if pool == "max":
        net.avgpool = nn.AdaptiveMaxPool2d((1, 1))
        net.partpool = nn.AdaptiveMaxPool2d((4, 1))
    else:
        net.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        net.partpool = nn.AdaptiveAvgPool2d((4, 1))
    return net


def imagenet_weights_path(backbone: str) -> Path:
    """Where torchvision caches its ImageNet weights for ``backbone`` (advbench never downloads)."""
    from torchvision import models

    weights = models.ResNet50_Weights if backbone == "resnet50" else models.ResNet18_Weights
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.IMAGENET1K_V1.url).name


class DGNetVictim(Victim):
    """DG-Net's appearance encoder / re-ID model (``ft_netAB``) with the official test feature.

    ``features`` = for the image and its horizontal flip, both heads' 512-d BN outputs (the heads
    without their last Linear), each L2-normalised and summed over the two views; each half is
    L2-normalised again and the fine-grained half scaled by ``sqrt(fine_grained_weight)``. Under
    cosine (or dot-product) scoring this ranks exactly as the official
    ``cos(prim) + fine_grained_weight * cos(fine)`` (β = 0.5 in the paper); the norm of every
    feature is ``sqrt(1 + fine_grained_weight)`` (√1.5 by default, √2 = the official stored
    vector when the weight is 1). Everything is differentiable.
    """

    distance = "cosine"
    feature_dim = 2 * EMBED_DIM

    def __init__(
        self,
        num_classes: int,
        input_size: tuple[int, int] = (256, 128),
        *,
        backbone: Backbone = "resnet50",
        stride: int = 1,
        pool: Pool = "max",
        droprate: float = 0.5,
        droprate_fine: float = 0.75,
        fine_grained_weight: float = 0.5,
    ) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise AdvbenchError(f"dgnet: num_classes must be >= 1, got {num_classes!r}")
        if float(fine_grained_weight) < 0.0:
            raise AdvbenchError(f"dgnet: fine_grained_weight must be >= 0, got {fine_grained_weight!r}")
        self.num_classes = int(num_classes)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.backbone = backbone
        self.stride = int(stride)
        self.pool = pool
        self.fine_grained_weight = float(fine_grained_weight)
        self.model = make_trunk(backbone, self.stride, pool)
        in_dim = BACKBONES[backbone]
        self.classifier1 = ClassBlock(in_dim, self.num_classes, droprate)
        self.classifier2 = ClassBlock(in_dim, self.num_classes, droprate_fine)
        # Not persistent: the state dict must hold exactly the official keys.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------------------ internals
    def _layer4(self, images: Tensor) -> Tensor:
        m = self.model
        x = (images - self.mean) / self.std
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))

    def _pooled(self, images: Tensor) -> Tensor:
        """The global (max by default) pooled ``layer4`` vector that both heads read."""
        return torch.flatten(self.model.avgpool(self._layer4(images)), 1)

    def appearance_code(self, images: Tensor) -> Tensor:
        """DG-Net's appearance code: ``layer4`` pooled into 4 stripes, flattened (8192-d for R-50).

        The official forward detaches it (it feeds the generator); here it stays differentiable.
        """
        return torch.flatten(self.model.partpool(self._layer4(images)), 1)

    # ---------------------------------------------------------------------------- victim API
    def head_embeddings(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Both heads without their last Linear (512-d BN outputs) for one view, unnormalised."""
        pooled = self._pooled(images)
        return self.classifier1.parts(pooled)[1], self.classifier2.parts(pooled)[1]

    def features(self, images: Tensor) -> Tensor:
        n = images.shape[0]
        both = torch.cat([images, images.flip(3)], 0)
        e1, e2 = self.head_embeddings(both)
        e1, e2 = F.normalize(e1, dim=1), F.normalize(e2, dim=1)
        prim = F.normalize(e1[:n] + e1[n:], dim=1)
        fine = F.normalize(e2[:n] + e2[n:], dim=1)
        return torch.cat([prim, math.sqrt(self.fine_grained_weight) * fine], 1)

    def logits(self, images: Tensor) -> Tensor:
        """``primary + fine_grained_weight * fine`` identity logits of the image (no flip)."""
        pooled = self._pooled(images)
        return self.classifier1(pooled) + self.fine_grained_weight * self.classifier2(pooled)

    def train_outputs(self, images: Tensor) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """((primary, fine) pre-BN 512-d embeddings, (primary, fine) logits) for the core trainer.

        The metric loss sees the Linear output before BN and the ID loss the logits after
        BN+Dropout (the BNNeck split); the test feature is the BN output.
        """
        pooled = self._pooled(images)
        lin1, _, log1 = self.classifier1.parts(pooled)
        lin2, _, log2 = self.classifier2.parts(pooled)
        return (lin1, lin2), (log1, log2)

    def extra_repr(self) -> str:
        return (
            f"backbone={self.backbone}, stride={self.stride}, pool={self.pool}, "
            f"num_classes={self.num_classes}, fine_grained_weight={self.fine_grained_weight}"
        )


def build(
    num_classes: int,
    input_size: tuple[int, int] = (256, 128),
    *,
    backbone: Backbone = "resnet50",
    stride: int = 1,
    pool: Pool = "max",
    droprate: float = 0.5,
    droprate_fine: float = 0.75,
    fine_grained_weight: float = 0.5,
    pretrained: bool | str = False,
) -> DGNetVictim:
    """An untrained DG-Net victim; ``pretrained`` = True (torchvision's cache) or a path loads ImageNet.

    ImageNet weights are never downloaded: with ``True`` the file must already be in torch's hub
    cache (where ``torchvision`` would put it), otherwise the error names the path and URL.
    """
    victim = DGNetVictim(
        num_classes,
        input_size,
        backbone=backbone,
        stride=stride,
        pool=pool,
        droprate=droprate,
        droprate_fine=droprate_fine,
        fine_grained_weight=fine_grained_weight,
    )
    if pretrained:
        path = imagenet_weights_path(backbone) if pretrained is True else Path(str(pretrained))
        if not path.is_file():
            from torchvision import models

            weights = models.ResNet50_Weights if backbone == "resnet50" else models.ResNet18_Weights
            raise AdvbenchError(
                f"dgnet: ImageNet weights for {backbone} not found at {path}; advbench does not "
                f"download them: fetch {weights.IMAGENET1K_V1.url} to that path, or set pretrained=false"
            )
        from advbench_dgnet.files import read_torch_file, strict_load

        state = read_torch_file(path)
        if not isinstance(state, dict):
            raise AdvbenchError(f"dgnet: {path} does not hold a state dict")
        strict_load(victim.model, state, source=str(path), what=f"torchvision {backbone}")
    return victim
