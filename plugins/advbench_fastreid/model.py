"""The fast-reid ``Baseline`` (backbone + EmbeddingHead) as an advbench victim, with fast-reid's keys.

``state_dict()`` has exactly the keys of fast-reid's ``model_final.pth['model']`` (``backbone.*``,
``heads.*``); ``pixel_mean``/``pixel_std`` are non-persistent buffers, as in fast-reid 1.4 (older
releases saved them, and the loader accepts them). Images arrive in [0, 1] and are scaled to 0-255
inside, since fast-reid's pixel statistics are in 0-255 units. The test feature is what fast-reid's
model returns in eval mode (the head's neck output), averaged with the flipped image's when the config
enables ``TEST.FLIP``, as fast-reid's evaluator does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from advbench.api import Victim
from advbench_fastreid.backbone import ResNetBackbone
from advbench_fastreid.config import FastReidConfig
from advbench_fastreid.head import EmbeddingHead


class FastReidVictim(Victim):
    """A fast-reid BoT / AGW / SBS model on a ResNet-50(-IBN) trunk.

    ``classifier_rows`` is the size of the ``heads.weight`` classifier (the checkpoint's; the
    dataset's for a model built here). ``num_classes`` is that size when it equals the dataset's
    train ids, else 0 and :meth:`logits` raises. ``run_size`` is the size the network runs at: the
    images (``input_size``, the dataset's) are resized to it bilinearly inside, differentiably,
    when the two differ. ``info`` describes the checkpoint for records.
    """

    def __init__(
        self,
        cfg: FastReidConfig,
        *,
        input_size: tuple[int, int],
        classifier_rows: int,
        num_classes: int,
        run_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.run_size = tuple(run_size) if run_size is not None else self.input_size
        self.distance = "cosine" if cfg.metric == "cosine" else "euclidean"
        self.feature_dim = cfg.out_dim
        self.num_classes = classifier_rows if classifier_rows == num_classes else 0
        self.info: dict[str, str] = {}
        self.backbone = ResNetBackbone(
            last_stride=cfg.last_stride, with_ibn=cfg.with_ibn, with_nl=cfg.with_nl
        )
        self.heads = EmbeddingHead(cfg, classifier_rows)
        mean, std = torch.tensor(cfg.pixel_mean), torch.tensor(cfg.pixel_std)
        self.register_buffer("pixel_mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", std.view(1, 3, 1, 1), persistent=False)

    def set_pixel_stats(self, mean: Tensor, std: Tensor) -> None:
        """Use a checkpoint's own ``pixel_mean``/``pixel_std`` (saved by fast-reid before 1.4)."""
        self.pixel_mean.copy_(mean.reshape(1, 3, 1, 1))
        self.pixel_std.copy_(std.reshape(1, 3, 1, 1))

    def preprocess(self, images: Tensor) -> Tensor:
        """[0, 1] images -> the network's input: resized to ``run_size``, in 0-255, normalised."""
        if tuple(images.shape[-2:]) != self.run_size:
            images = F.interpolate(images, size=self.run_size, mode="bilinear", align_corners=False)
        return (images * 255.0 - self.pixel_mean) / self.pixel_std

    def pooled_and_neck(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(pooled backbone feature, neck output) of one view."""
        return self.heads(self.backbone(self.preprocess(images)))

    def features(self, images: Tensor) -> Tensor:
        neck = self.pooled_and_neck(images)[1]
        if self.cfg.flip_test:
            neck = (neck + self.pooled_and_neck(images.flip(dims=[3]))[1]) / 2
        return neck

    def _check_logits(self) -> None:
        if self.num_classes == 0:
            why = self.info.get("classifier", f"{self.heads.weight.shape[0]} ids")
            raise NotImplementedError(
                f"this fast-reid checkpoint's classifier does not fit the dataset ({why}); "
                "attacks that need identity logits cannot use it"
            )

    def logits(self, images: Tensor) -> Tensor:
        self._check_logits()
        return self.heads.logits(self.pooled_and_neck(images)[1])

    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        self._check_logits()
        if self.cfg.flip_test:
            return self.features(images), self.logits(images)
        neck = self.pooled_and_neck(images)[1]
        return neck, self.heads.logits(neck)

    def train_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(triplet feature: pooled if ``NECK_FEAT`` is ``before``, else the neck output; logits).

        Margin classifiers give their margin-free scaled cosine logits (advbench's trainer does not
        pass labels to the model).
        """
        self._check_logits()
        pooled, neck = self.pooled_and_neck(images)
        return (pooled if self.cfg.neck_feat == "before" else neck), self.heads.logits(neck)
