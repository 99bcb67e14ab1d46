"""``tiny-cnn``: a user's own small ``torch.nn.Module`` wrapped as a trainable re-ID victim.

The point is the wrapping, not the model: any network becomes a victim by normalising inside,
exposing a differentiable test feature (:meth:`TinyReidNet.features`), identity logits, and the
(embedding, logits) pair the shared trainer (:mod:`advbench.training`) needs. The head follows the
"BNNeck" of Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification"
(CVPRW 2019): triplet loss before the batch norm, ID loss and cosine retrieval after it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advbench.api import AdvbenchError, Victim

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """3x3 conv, batch norm, ReLU, then 2x2 max pooling (halves H and W)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
    )


class TinyReidNet(Victim):
    """Three conv blocks (``width``, 2x, 4x channels) -> global average pool -> linear embedding ->
    BNNeck -> (L2-normalised feature | bias-free identity classifier).

    Takes images in [0, 1] at any size (``input_size`` records what it is trained for) and applies
    ImageNet mean/std inside, so attacks stay in pixel space.
    """

    distance = "cosine"

    def __init__(
        self, *, num_classes: int, input_size: tuple[int, int], width: int = 16, embed_dim: int = 128
    ) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.num_classes = int(num_classes)
        self.feature_dim = int(embed_dim)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))
        self.body = nn.Sequential(
            conv_block(3, width), conv_block(width, 2 * width), conv_block(2 * width, 4 * width)
        )
        self.embed = nn.Linear(4 * width, self.feature_dim)
        self.bnneck = nn.BatchNorm1d(self.feature_dim)
        self.bnneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(self.feature_dim, max(self.num_classes, 1), bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def embedding(self, images: Tensor) -> Tensor:
        """The pooled, projected feature before the BNNeck (what the triplet loss sees)."""
        x = self.body((images - self.mean) / self.std)
        return self.embed(x.mean(dim=(2, 3)))

    def features(self, images: Tensor) -> Tensor:
        return F.normalize(self.bnneck(self.embedding(images)), dim=1)

    def logits(self, images: Tensor) -> Tensor:
        return self.classifier(self.bnneck(self.embedding(images)))

    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        neck = self.bnneck(self.embedding(images))
        return F.normalize(neck, dim=1), self.classifier(neck)

    def train_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        emb = self.embedding(images)
        return emb, self.classifier(self.bnneck(emb))


DEFAULTS = {"width": 16, "embed_dim": 128}


def build(num_classes: int, input_size: tuple[int, int], **params: int) -> TinyReidNet:
    """The :class:`~advbench.api.VictimSpec` ``build``: an untrained net for a dataset."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise AdvbenchError(f"tiny-cnn has no parameter {unknown[0]!r}; valid: {', '.join(DEFAULTS)}")
    return TinyReidNet(num_classes=num_classes, input_size=input_size, **params)
