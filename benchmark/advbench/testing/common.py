"""What every check shares: the error type, the tiny inputs and the tolerances, and :class:`TinyVictim`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advbench.api import (
    Victim,
)

DEFAULT_INPUT_SIZE = (64, 32)
"""(H, W) the kit uses when no dataset input size is given: small, but deep enough for a ResNet."""


LINF_SLACK = 1e-6


PATCH_AREA = 0.1
"""The patch area (fraction of the image) the kit builds a ``patch``-budget attack with, at eps=255."""


class ConformanceError(AssertionError):
    """A plugin broke a rule of the contract; the message names the plugin, the rule and the numbers."""


def _fail(kind: str, name: str, rule: str, detail: str) -> ConformanceError:
    return ConformanceError(f"{kind} {name!r}: {rule}: {detail}")


def _params(spec: Any, params: Mapping[str, Any] | None, variant: str | None) -> dict[str, Any]:
    """The spec's defaults overridden by ``params``, plus ``variant`` for family specs."""
    merged = {**spec.defaults, **(params or {})}
    if getattr(spec, "variant", False):
        if not variant:
            raise ConformanceError(
                f"{spec.name!r} is a family: pass variant=... to check one member ({spec.name}:<variant>)"
            )
        merged["variant"] = variant
    return merged


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int, size: tuple[int, int], seed: int = 0) -> Tensor:
    """``n`` float images in [0, 1] drawn from a fixed seed (so failures reproduce)."""
    return torch.rand(n, 3, *size, generator=_generator(seed))


def _close(a: Tensor, b: Tensor, rel: float = 1e-4) -> float | None:
    """Max abs difference of ``a`` and ``b`` when it exceeds ``rel`` x their scale, else None."""
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    scale = float(a.abs().max()) + 1.0 if a.numel() else 1.0
    return diff if diff > rel * scale else None


def _shape(t: Any) -> str:
    return str(list(t.shape)) if isinstance(t, Tensor) else type(t).__name__


# ------------------------------------------------------------------------------------- tiny victim
class TinyVictim(Victim):
    """A three-layer CNN re-ID model (8-d cosine feature, ID head): the kit's victim for attack checks.

    Cheap enough to attack at every eps in well under a second; seeded so every check sees the same
    weights. Trainable (``num_classes`` > 0), so attacks that need logits work on it too.
    """

    distance = "cosine"

    def __init__(
        self, num_classes: int = 4, input_size: tuple[int, int] = DEFAULT_INPUT_SIZE, feature_dim: int = 8
    ) -> None:
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.body = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(16, self.feature_dim),
            )
            self.head = nn.Linear(self.feature_dim, max(self.num_classes, 1), bias=False)

    def embed(self, images: Tensor) -> Tensor:
        return self.body(images * 2.0 - 1.0)

    def features(self, images: Tensor) -> Tensor:
        return F.normalize(self.embed(images), dim=1)

    def logits(self, images: Tensor) -> Tensor:
        return self.head(self.embed(images))

    def train_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        feat = self.embed(images)
        return feat, self.head(feat)


def _run(fail: Callable[[str, str], Exception], rule: str, call: Callable[[], Any]) -> Any:
    """``call()``, with any exception turned into a ConformanceError for ``rule``."""
    try:
        return call()
    except ConformanceError:
        raise
    except Exception as exc:
        raise fail(rule, f"raised {type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from exc
