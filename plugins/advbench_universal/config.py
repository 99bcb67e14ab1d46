"""Hyper-parameters of ``uap-retrieval`` (torch-free, so the plugin hook stays cheap).

The defaults are sized for the embedded 128x64 dataset on a 2-core CPU. The official code (GitHub
theFool32/UAP_retrieval, ``cirtorch/examples/attack/attack.py``) clusters 20,000 train features into
512 centres and runs up to 100 epochs of batch-1 steps at 1024 px; the values it uses where they carry
over unchanged are the margin (0.8), the feature scale (10), the step size (eps / 10), the momentum (1)
and the per-epoch learning-rate decay (exp(-0.01)).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

LOSSES = ("point", "pair", "list", "label")
"""The four loss families of Li et al. (ICCV 2019); ``loss`` takes one or several joined by ``+``."""


@dataclass(frozen=True)
class UniversalConfig:
    """Everything the learnt δ depends on besides the victim, the train split and eps.

    ``loss``: ``pair`` (default), ``list``, ``point``, ``label`` or a sum such as ``pair+point``.
    ``steps``: δ updates; ``batch_size``: train images per update. ``lr``: signed step in 1/255 units
    (None: eps / 10, the official choice); ``lr_decay``: lr is multiplied by exp(-lr_decay) after each
    pass over the pool. ``momentum``: of the L1-normalised gradient (1 = plain accumulation, as
    officially). ``clusters``: k-means centres of the clean train features, the "neighbourhood" the
    losses break; ``pool``: at most this many train images are featurised, clustered and trained on.
    ``margin`` and ``scale``: of the pair-wise triplet and of the label-wise logits, in a feature space
    scaled by ``scale``. ``rescale``: halve δ once more than half of it sits on the budget and that share
    stopped changing (the official optimiser's rescale step). ``init``: ``zero`` (official), ``uniform``
    in the ball, or ``auto``: zero unless the loss is only point- and/or label-wise (stationary at 0).
    """

    loss: str = "pair"
    steps: int = 60
    batch_size: int = 32
    lr: float | None = None
    lr_decay: float = 0.01
    momentum: float = 1.0
    clusters: int = 16
    pool: int = 2048
    kmeans_iters: int = 25
    margin: float = 0.8
    scale: float = 10.0
    rescale: bool = True
    init: str = "auto"

    def __post_init__(self) -> None:
        for part in self.losses:
            if part not in LOSSES:
                raise ValueError(f"unknown uap-retrieval loss {part!r}; choose from {', '.join(LOSSES)}")
        for name in ("steps", "batch_size", "clusters", "pool", "kmeans_iters"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"uap-retrieval: {name} must be >= 1, got {getattr(self, name)}")
        if self.clusters < 2:
            raise ValueError("uap-retrieval: clusters must be >= 2 (a nearest and a farthest centre)")
        if self.init not in ("auto", "zero", "uniform"):
            raise ValueError(f"uap-retrieval: init must be auto, zero or uniform, got {self.init!r}")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"uap-retrieval: lr must be positive, got {self.lr}")

    @property
    def losses(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in str(self.loss).split("+") if p.strip())


def make_config(**params: Any) -> UniversalConfig:
    """A config from explicit ``params`` (unknown names are an error)."""
    known = [f.name for f in dataclasses.fields(UniversalConfig)]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"uap-retrieval has no parameter {unknown[0]!r}; valid: {', '.join(known)}")
    return UniversalConfig(**params)


def default_params() -> dict[str, Any]:
    """The defaults the attack registers with (shown by ``advbench plugins``)."""
    return dataclasses.asdict(UniversalConfig())
