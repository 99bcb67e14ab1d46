"""A torchreid network as an advbench :class:`~advbench.api.Victim`.

The network is torchreid's own ``build_model(arch, num_classes, loss='triplet', pretrained=False)``
(deep-person-reid, https://github.com/KaiyangZhou/deep-person-reid), untouched, so its state dict is
a torchreid checkpoint's. Around it the victim does what torchreid's ``FeatureExtractor`` does
outside the network: resize to the network's size, then ImageNet mean/std normalisation, both
inside so that attacks work on [0, 1] pixels.

torchreid's models switch on their own ``training`` flag only (``if not self.training: return v``);
their layers (BatchNorm, dropout) look at their own flags. The victim sets the top module's flag
alone to pick the output it needs: ``False`` gives the test embedding, ``True`` gives
``(logits, embedding)``, while the layers stay in the victim's mode (eval for attacks, train for
training).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advbench.api import AdvbenchError, Distance, Victim
from advbench_torchreid.extra import require_torchreid

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""``FeatureExtractor``'s default ``pixel_mean`` / ``pixel_std``, also its training transforms'."""

TORCHREID_SIZE = (256, 128)
"""torchreid's default ``height`` x ``width``: the size of its released and typical checkpoints."""

FIXED_SIZE: dict[str, tuple[int, int]] = {"hacnn": (160, 64), "mudeep": (256, 128)}
"""Architectures that only run at one size (HACNN asserts it, MuDeep's fc layer is sized for it)."""

TWO_PASS = frozenset({"hacnn"})
"""Architectures whose training embedding is not their test embedding (HACNN's two branches are
L2-normalised and concatenated only at test time), so features and logits take two passes."""


def parse_size(value: Any, default: tuple[int, int], arch: str) -> tuple[int, int]:
    """``image_size`` (``auto``, ``HxW`` or a pair) as (H, W); ``auto`` is ``default``."""
    fixed = FIXED_SIZE.get(arch)
    if value in (None, "auto"):
        return fixed or (int(default[0]), int(default[1]))
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*[x,]\s*(\d+)\s*", value)
        size = (int(match[1]), int(match[2])) if match else None
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        size = (int(value[0]), int(value[1]))
    else:
        size = None
    if size is None or min(size) < 1:
        raise AdvbenchError(f"torchreid:{arch}: image_size must be auto or HxW (e.g. 256x128), got {value!r}")
    if fixed and size != fixed:
        raise AdvbenchError(f"torchreid:{arch} runs at {fixed[0]}x{fixed[1]} only, got image_size {value!r}")
    return size


def local_imagenet_weights(arch: str) -> Path | None:
    """torchreid's ImageNet file ``<arch>_imagenet.pth`` if already on this machine; never downloads.

    Looked up in ``$ADVBENCH_WEIGHTS`` and where torchreid's ``pretrained=True`` puts its downloads
    (``$TORCH_HOME/checkpoints``, default ``~/.cache/torch/checkpoints``).
    """
    torch_home = os.environ.get(
        "TORCH_HOME", os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    )
    folders = [os.environ.get("ADVBENCH_WEIGHTS"), os.path.join(torch_home, "checkpoints")]
    for folder in filter(None, folders):
        for suffix in (".pth", ".pth.tar", ".pt"):
            candidate = Path(folder).expanduser() / f"{arch}_imagenet{suffix}"
            if candidate.is_file():
                return candidate
    return None


class TorchreidVictim(Victim):
    """torchreid ``build_model(arch)`` with the resize and normalisation of its ``FeatureExtractor``.

    ``features`` is exactly the network's eval-mode output, which is what ``FeatureExtractor`` returns
    and torchreid's engine ranks (``metric='euclidean'``: squared euclidean on these unnormalised
    features, advbench's ``euclidean``; or ``cosine``). Images at ``input_size`` (the dataset's) are
    resized to ``image_size`` with antialiased bilinear interpolation, which follows PIL's bilinear
    ``Resize`` up to PIL's rounding to 8 bits: features equal ``FeatureExtractor``'s exactly only when
    the two sizes agree (then nothing is resized on either side).

    ``head_classes`` is the size of the network's classifier (by default ``num_classes``, the dataset's
    train ids); when it is not the dataset's, ``num_classes`` is 0 and :meth:`logits` raises.
    """

    def __init__(
        self,
        arch: str,
        *,
        num_classes: int,
        input_size: tuple[int, int],
        metric: str = "euclidean",
        image_size: Any = "auto",
        pretrained: Any = False,
        head_classes: int | None = None,
        default_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        models = require_torchreid(f"torchreid:{arch}")
        if metric not in ("euclidean", "cosine"):
            raise AdvbenchError(f"torchreid:{arch}: metric must be euclidean or cosine, got {metric!r}")
        self.arch = arch
        self.distance: Distance = metric  # type: ignore[assignment]
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.image_size = parse_size(image_size, default_size or self.input_size, arch)
        num_classes = int(num_classes or 0)
        head = int(num_classes if head_classes is None else head_classes)
        self.head_classes = max(head, 1)
        self.num_classes = num_classes if head == num_classes and head > 0 else 0
        self.no_head = "" if self.num_classes else f"torchreid:{arch} has no identity classifier"
        # pretrained=False always: torchreid's True downloads; ImageNet weights come from local files.
        self.model = models.build_model(
            arch, num_classes=self.head_classes, loss="triplet", pretrained=False, use_gpu=False
        )
        self.init = self._imagenet_init(pretrained)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        was = self.model.training
        with torch.no_grad():
            self.feature_dim = int(self.model.eval()(torch.zeros(1, 3, *self.image_size)).shape[1])
        self.model.train(was)

    # ------------------------------------------------------------------------------ building
    def _imagenet_init(self, pretrained: Any) -> str:
        """Load local ImageNet weights as torchreid does (names and shapes that match); what was done."""
        if pretrained in (False, None, "false", "False", "no", ""):
            return "scratch"
        if pretrained in (True, "true", "True", "auto", "yes"):
            path = local_imagenet_weights(self.arch)
            if path is None:
                if pretrained == "auto":
                    return "scratch"
                raise AdvbenchError(
                    f"torchreid:{self.arch}: no local ImageNet weights; put {self.arch}_imagenet.pth in "
                    "$ADVBENCH_WEIGHTS or pass pretrained=PATH (advbench never downloads them)"
                )
        else:
            path = Path(str(pretrained)).expanduser()
            if not path.is_file():
                raise AdvbenchError(f"torchreid:{self.arch}: pretrained={pretrained}: no such file")
        from advbench_torchreid.files import read_torch_file, state_dict_of

        state, _ = state_dict_of(read_torch_file(path), path)
        own = self.model.state_dict()
        keep = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
        if not keep:
            raise AdvbenchError(
                f"torchreid:{self.arch}: pretrained={path}: no tensor matches the model by name and shape"
            )
        self.model.load_state_dict({**own, **keep})
        return f"imagenet:{path.name} ({len(keep)} of {len(own)} tensors)"

    # ------------------------------------------------------------------------------- forward
    @contextlib.contextmanager
    def _root(self, training: bool) -> Iterator[None]:
        """The network's own ``training`` flag (its output switch) set alone, restored after."""
        was = self.model.training
        self.model.training = training
        try:
            yield
        finally:
            self.model.training = was

    def prepare(self, images: Tensor) -> Tensor:
        """[0, 1] images at any size -> the network's input: resized to ``image_size``, normalised."""
        if tuple(images.shape[-2:]) != self.image_size:
            images = F.interpolate(
                images, size=self.image_size, mode="bilinear", align_corners=False, antialias=True
            )
        return (images - self.mean) / self.std

    def _heads(self, images: Tensor) -> tuple[Any, Any]:
        """(logits, embedding) of torchreid's training branch; either may be a list (PCB, HACNN)."""
        with self._root(True):
            logits, embedding = self.model(self.prepare(images))
        return logits, embedding

    def features(self, images: Tensor) -> Tensor:
        with self._root(False):
            return self.model(self.prepare(images))

    def _combine(self, logits: Any) -> Tensor:
        if not self.num_classes:
            raise NotImplementedError(self.no_head)
        if isinstance(logits, (list, tuple)):  # PCB's parts, HACNN's branches: their mean
            return torch.stack(list(logits)).mean(0)
        return logits

    def logits(self, images: Tensor) -> Tensor:
        """Identity logits of torchreid's classifier (the mean over heads for PCB and HACNN)."""
        if not self.num_classes:
            raise NotImplementedError(self.no_head)
        return self._combine(self._heads(images)[0])

    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if not self.num_classes:
            raise NotImplementedError(self.no_head)
        if self.arch in TWO_PASS:
            return self.features(images), self.logits(images)
        logits, embedding = self._heads(images)
        return embedding, self._combine(logits)

    def train_outputs(self, images: Tensor) -> tuple[Any, Any]:
        """(torchreid's triplet embedding, its logits), per head as tuples where it has several."""
        if not self.num_classes:
            raise NotImplementedError(f"{self.no_head}, so advbench cannot train it")
        logits, embedding = self._heads(images)
        as_tuple = lambda x: tuple(x) if isinstance(x, (list, tuple)) else x  # noqa: E731
        return as_tuple(embedding), as_tuple(logits)
