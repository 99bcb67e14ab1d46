"""fast-reid's ``EmbeddingHead`` layout: ``pool_layer``, ``bottleneck`` (neck) and the classifier ``weight``.

From https://github.com/JDAI-CV/fast-reid (``fastreid/modeling/heads/embedding_head.py``,
``layers/pooling.py``, ``layers/any_softmax.py``): the feature map is pooled to ``[N, C, 1, 1]``, an
optional 1x1 embedding conv and an optional BN neck with a frozen bias (the BNNeck of Luo et al.,
CVPRW 2019) follow, and the eval-mode output is the neck's output, whatever ``NECK_FEAT`` says
(that setting picks the *training* triplet feature). The classifier is a bare ``[classes, dim]``
weight: plain linear logits, or scaled cosine logits for the margin classifiers (CosFace, ArcFace,
Circle), whose margins need the labels and exist in training only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advbench_fastreid.config import FastReidConfig

GEM_P = 3.0
"""fast-reid builds ``GeneralizedMeanPooling`` with its default norm, p = 3."""
GEM_EPS = 1e-6


class GeneralizedMeanPool(nn.Module):
    """GeM pooling (Radenović et al., TPAMI 2018, "Fine-tuning CNN Image Retrieval with No Human
    Annotation"): ``mean(clamp(x, eps)^p)^(1/p)`` over the map; ``learnable`` makes p a parameter
    (fast-reid's ``GeneralizedMeanPoolingP``, key ``p``)."""

    def __init__(self, p: float = GEM_P, *, learnable: bool = False, eps: float = GEM_EPS) -> None:
        super().__init__()
        self.eps = eps
        if learnable:
            self.p = nn.Parameter(torch.full((1,), float(p)))
        else:
            self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        p = self.p
        return F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(p), 1).pow(1.0 / p)


class AvgMaxPool(nn.Module):
    """Global average plus global max (fast-reid's ``AdaptiveAvgMaxPool``)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, 1)


class ClipAvgPool(nn.Module):
    """Global average clipped to [0, 1] (fast-reid's ``ClipGlobalAvgPool``)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(x, 1).clamp(0.0, 1.0)


def pool_layer(name: str) -> nn.Module:
    """The pooling module named by ``MODEL.HEADS.POOL_LAYER`` (checked by the config reader)."""
    if name in ("GlobalAvgPool", "FastGlobalAvgPool"):
        return nn.AdaptiveAvgPool2d(1)
    if name == "GlobalMaxPool":
        return nn.AdaptiveMaxPool2d(1)
    if name in ("GeneralizedMeanPooling", "GeneralizedMeanPoolingP"):
        return GeneralizedMeanPool(learnable=name.endswith("P"))
    if name == "AdaptiveAvgMaxPool":
        return AvgMaxPool()
    if name == "ClipGlobalAvgPool":
        return ClipAvgPool()
    raise ValueError(f"unknown pool layer {name!r}")


class EmbeddingHead(nn.Module):
    """Pool -> (1x1 conv) -> (BN neck, bias frozen); classifier ``weight`` of ``num_classes`` rows."""

    def __init__(self, cfg: FastReidConfig, num_classes: int) -> None:
        super().__init__()
        self.pool_layer = pool_layer(cfg.pool)
        neck: list[nn.Module] = []
        if cfg.embedding_dim > 0:
            neck.append(nn.Conv2d(cfg.feat_dim, cfg.embedding_dim, 1, 1, bias=False))
        if cfg.with_bnneck:
            bn = nn.BatchNorm2d(cfg.out_dim)
            bn.bias.requires_grad_(False)
            neck.append(bn)
        self.bottleneck = nn.Sequential(*neck)
        self.weight = nn.Parameter(torch.empty(num_classes, cfg.out_dim))
        self.cosine = cfg.cls_layer != "Linear"
        self.scale = float(cfg.scale)
        self._init_weights()

    def _init_weights(self) -> None:
        """Kaiming for the embedding conv, unit BN, N(0, 0.01) classifier (fast-reid's choices)."""
        for m in self.bottleneck:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.weight, std=0.01)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """(pooled ``[N, C]``, neck output ``[N, D]``) of a backbone map; the neck output is the test feature."""
        pooled = self.pool_layer(features)
        return pooled[..., 0, 0], self.bottleneck(pooled)[..., 0, 0]

    def logits(self, neck: Tensor) -> Tensor:
        """Identity logits without any margin: ``scale * neck @ W^T`` or ``scale * cos(neck, W)``."""
        if self.cosine:
            return F.linear(F.normalize(neck, dim=1), F.normalize(self.weight, dim=1)) * self.scale
        return F.linear(neck, self.weight) * self.scale
