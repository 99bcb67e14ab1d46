"""The re-ID model built around a timm backbone (the "strong baseline" head of Luo et al. 2019)."""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advbench.api import AdvbenchError, Victim


def local_imagenet_weights(model_name: str) -> Path | None:
    """A pretrained weight file already on this machine, or None; never downloads.

    Looked up in ``$ADVBENCH_WEIGHTS/<model_name>.{safetensors,pth}`` and in timm's Hugging Face cache.
    """
    folder = os.environ.get("ADVBENCH_WEIGHTS")
    if folder:
        for suffix in (".safetensors", ".pth", ".pt"):
            candidate = Path(folder) / f"{model_name}{suffix}"
            if candidate.is_file():
                return candidate
    try:
        from huggingface_hub import try_to_load_from_cache

        hub_id = timm.models.get_pretrained_cfg(model_name).hf_hub_id
        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(hub_id, filename) if hub_id else None
            if isinstance(found, str):
                return Path(found)
    except Exception:
        return None
    return None


class TimmReid(Victim):
    """timm backbone -> global pool -> BNNeck -> (L2-normalised feature | bias-free ID classifier).

    Input is [0, 1]; the backbone's own mean/std normalisation is applied inside. The test
    feature is the L2-normalised BNNeck output compared by cosine distance; training uses the
    pre-BN feature for the triplet loss and the classifier on the post-BN feature for the ID loss.
    ``pretrained``: ``"auto"`` uses ImageNet weights when a local file exists, ``True`` requires one,
    ``False`` trains from scratch.
    """

    distance = "cosine"

    def __init__(
        self,
        model_name: str,
        *,
        num_classes: int,
        input_size: tuple[int, int],
        pretrained: bool | str = "auto",
    ) -> None:
        super().__init__()
        if model_name not in timm.list_models():
            raise AdvbenchError(f"timm has no model {model_name!r}; see timm.list_models()")
        self.model_name = model_name
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.num_classes = int(num_classes)
        weights = local_imagenet_weights(model_name) if pretrained in ("auto", True, "true") else None
        if pretrained in (True, "true") and weights is None:
            raise AdvbenchError(
                f"no local ImageNet weights for {model_name}; put them at $ADVBENCH_WEIGHTS/{model_name}.safetensors"
            )
        self.init = f"imagenet:{weights.name}" if weights else "scratch"
        kwargs = {"pretrained": weights is not None, "num_classes": 0}
        if weights is not None:
            kwargs["pretrained_cfg_overlay"] = {"file": str(weights)}
        try:
            self.backbone = timm.create_model(model_name, img_size=self.input_size, **kwargs)
        except TypeError:  # convolutional models take any size and have no img_size argument
            self.backbone = timm.create_model(model_name, **kwargs)
        # channels-last convolutions: measured 16-17% faster training steps on CPU for resnet10t and
        # mobilenetv3 at 128x64 (oneDNN's native layout); harmless for ViTs
        self.backbone.to(memory_format=torch.channels_last)
        cfg = self.backbone.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1))
        with torch.no_grad():  # num_features is wrong for some models (mobilenetv3 says 576, gives 1024)
            self.feature_dim = int(self.backbone.eval()(torch.zeros(1, 3, *self.input_size)).shape[1])
        self.bnneck = nn.BatchNorm1d(self.feature_dim)
        self.bnneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(self.feature_dim, max(self.num_classes, 1), bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def embed(self, images: Tensor) -> Tensor:
        """Pooled backbone feature before the BNNeck."""
        return self.backbone(((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last))

    def neck(self, images: Tensor) -> Tensor:
        """BNNeck output: the test feature before L2 normalisation and the classifier's input."""
        return self.bnneck(self.embed(images))

    def features(self, images: Tensor) -> Tensor:
        return F.normalize(self.neck(images), dim=1)

    def logits(self, images: Tensor) -> Tensor:
        return self.classifier(self.neck(images))

    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        neck = self.neck(images)
        return F.normalize(neck, dim=1), self.classifier(neck)

    def train_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.embed(images)
        return feat, self.classifier(self.bnneck(feat))
