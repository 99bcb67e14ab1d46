"""fast-reid's ResNet backbone, with its module names: ``conv1``, ``bn1``, ``layer1..4``, ``NL_1..4``.

The residual blocks are torchvision's ``Bottleneck`` (same names, stride on the 3x3 conv, as fast-reid's
own block without SE). What fast-reid does differently is written here, from its source
(https://github.com/JDAI-CV/fast-reid, ``fastreid/modeling/backbones/resnet.py``, ``layers/``):

* the stem's max pool is ``MaxPool2d(3, 2, ceil_mode=True)`` without padding (torchvision pads by 1);
* ``last_stride`` 1 keeps layer4 at 1/16 resolution (Luo et al., CVPRW 2019, "Bag of Tricks and a
  Strong Baseline for Deep Person Re-identification");
* IBN-a (Pan et al., ECCV 2018, "Two at Once: Enhancing Learning and Generalization Capacities via
  IBN-Net") replaces ``bn1`` of every block in layer1-3 by half InstanceNorm, half BatchNorm;
* non-local blocks (Wang et al., CVPR 2018, "Non-local Neural Networks"), as used by AGW (Ye et al.,
  TPAMI 2021, "Deep Learning for Person Re-identification: A Survey and Outlook"), follow the last 2
  blocks of layer2 and the last 3 of layer3 (``NL_2``, ``NL_3``; ``NL_1``/``NL_4`` are empty).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck

RESNET50_BLOCKS = (3, 4, 6, 3)
RESNET50_NON_LOCAL = (0, 2, 3, 0)
"""Non-local blocks per stage of fast-reid's ``50x`` ResNet."""
NON_LOCAL_INTER_CHANNELS = 1
"""fast-reid's ``Non_local`` computes its inner width as ``reduc_ratio // reduc_ratio``, i.e. 1, so every
released AGW/SBS checkpoint has 1-channel theta/phi/g convolutions; the layout follows the checkpoints."""


class IBN(nn.Module):
    """IBN-a normalisation: InstanceNorm (affine) on the first ``planes // 2`` channels, BN on the rest."""

    def __init__(self, planes: int) -> None:
        super().__init__()
        self.half = planes // 2
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: Tensor) -> Tensor:
        first, rest = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat((self.IN(first.contiguous()), self.BN(rest.contiguous())), dim=1)


class NonLocal(nn.Module):
    """Embedded dot-product non-local block with a residual ``W`` (1x1 conv + BN, zero-initialised).

    ``z = x + W(y)``, ``y_i = (1/N) sum_j theta(x_i) . phi(x_j) g(x_j)`` over the N positions.
    """

    def __init__(self, channels: int, inter: int = NON_LOCAL_INTER_CHANNELS) -> None:
        super().__init__()
        self.inter = inter
        self.g = nn.Conv2d(channels, inter, 1)
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.W = nn.Sequential(nn.Conv2d(inter, channels, 1), nn.BatchNorm2d(channels))
        nn.init.zeros_(self.W[1].weight)
        nn.init.zeros_(self.W[1].bias)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        g = self.g(x).flatten(2).transpose(1, 2)  # [B, N, inter]
        theta = self.theta(x).flatten(2).transpose(1, 2)  # [B, N, inter]
        phi = self.phi(x).flatten(2)  # [B, inter, N]
        affinity = torch.matmul(theta, phi) / phi.shape[-1]  # [B, N, N]
        y = torch.matmul(affinity, g).transpose(1, 2).reshape(b, self.inter, h, w)
        return x + self.W(y)


class ResNetBackbone(nn.Module):
    """ResNet-50 feature map ``[N, 2048, H/16, W/16]`` (last stride 1) in fast-reid's layout."""

    def __init__(self, *, last_stride: int = 1, with_ibn: bool = False, with_nl: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
        widths, strides, inplanes = (64, 128, 256, 512), (1, 2, 2, last_stride), 64
        for i, (width, blocks, stride) in enumerate(zip(widths, RESNET50_BLOCKS, strides, strict=True)):
            layer = _stage(inplanes, width, blocks, stride, ibn=with_ibn and i < 3)
            self.add_module(f"layer{i + 1}", layer)
            inplanes = width * Bottleneck.expansion
        self._init_weights()
        self.non_local: list[list[int]] = [[] for _ in widths]
        """After which block of each stage each ``NL_k`` module runs (``NL_k[j]`` after block ``[k][j]``)."""
        if with_nl:
            for i, (width, blocks, count) in enumerate(
                zip(widths, RESNET50_BLOCKS, RESNET50_NON_LOCAL, strict=True)
            ):
                channels = width * Bottleneck.expansion
                self.add_module(f"NL_{i + 1}", nn.ModuleList(NonLocal(channels) for _ in range(count)))
                self.non_local[i] = list(range(blocks - count, blocks))

    def _init_weights(self) -> None:
        """He-normal convolutions (fan-out) and unit BN, fast-reid's initialisation of its ResNet."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(4):
            stage: nn.Sequential = getattr(self, f"layer{i + 1}")
            after = self.non_local[i]
            for j, block in enumerate(stage):
                x = block(x)
                if j in after:
                    x = getattr(self, f"NL_{i + 1}")[after.index(j)](x)
        return x


def _stage(inplanes: int, width: int, blocks: int, stride: int, *, ibn: bool) -> nn.Sequential:
    """``blocks`` Bottlenecks; the first one downsamples (1x1 conv + BN) when shape or stride change."""
    out = width * Bottleneck.expansion
    layers = []
    for j in range(blocks):
        downsample = None
        if j == 0 and (stride != 1 or inplanes != out):
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )
        block = Bottleneck(inplanes if j == 0 else out, width, stride if j == 0 else 1, downsample)
        if ibn:
            block.bn1 = IBN(width)
        layers.append(block)
    return nn.Sequential(*layers)
