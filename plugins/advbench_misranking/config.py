"""Hyper-parameters of the Mis-Ranking attack and its two presets (torch-free, so the hook stays cheap).

``cpu`` (the default) is sized for the embedded 128x64 dataset on a 2-core CPU: a narrower generator and
discriminator, and a fixed number of steps (see docs/misranking.md for the measured cost). ``paper`` gives
the official sizes: ngf 32 with 6 residual blocks, ndf 64, 40 epochs of (#train ids x 4) / 32 batches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Bound = Literal["tanh", "st"]
RealPair = Literal["self", "other"]
RankingRef = Literal["adversarial", "clean"]
Norm = Literal["bn", "in"]


@dataclass(frozen=True)
class MisRankingConfig:
    """Everything the fitted generator depends on besides the victim, the data and eps.

    ``k``: attacked pixels per image (None = full-image attack). ``steps``: generator updates; when
    ``epochs`` is set it wins, as in the official code (one epoch = #train ids / batch_p batches).
    ``bound``: ``tanh`` scales tanh by eps (differentiable); ``st`` rescales each channel so its max
    is eps, passing gradients straight through (what the official code effectively does).
    ``real_pair``: what the discriminator sees as a real [clean, candidate] pair: ``self`` (the clean
    image twice) or ``other`` (a clean image of another identity, the official choice).
    ``ranking_ref``: the mis-ranking loss compares adversarial features with each other
    (``adversarial``, the paper) or with the clean features of the batch (``clean``).
    """

    k: int | None = None
    steps: int = 60
    epochs: float | None = None
    batch_p: int = 8
    batch_k: int = 4
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    margin: float = 0.3
    label_smoothing: float = 0.1
    w_rank: float = 10.0
    w_xent: float = 1.0
    w_gan: float = 1.0
    w_percep: float = 0.1
    ngf: int = 16
    n_blocks: int = 3
    norm: Norm = "bn"
    ndf: int = 16
    d_layers: int = 3
    mask_width: int = 16
    bound: Bound = "tanh"
    real_pair: RealPair = "self"
    ranking_ref: RankingRef = "clean"
    flip: bool = True
    seed: int | None = None  # None: drawn from the run's seed (the runner seeds each fit from its key)
    chunk: int = 128

    def __post_init__(self) -> None:
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be a positive number of pixels or None, got {self.k}")
        if self.bound not in ("tanh", "st"):
            raise ValueError(f"bound must be 'tanh' or 'st', got {self.bound!r}")
        if self.real_pair not in ("self", "other"):
            raise ValueError(f"real_pair must be 'self' or 'other', got {self.real_pair!r}")
        if self.ranking_ref not in ("adversarial", "clean"):
            raise ValueError(f"ranking_ref must be 'adversarial' or 'clean', got {self.ranking_ref!r}")
        if self.norm not in ("bn", "in"):
            raise ValueError(f"norm must be 'bn' or 'in', got {self.norm!r}")
        if self.batch_p < 2 or self.batch_k < 2:
            raise ValueError("P x K batches need batch_p >= 2 and batch_k >= 2")


PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {},
    "paper": {"ngf": 32, "n_blocks": 6, "ndf": 64, "mask_width": 64, "epochs": 40.0},
}


def make_config(preset: str = "cpu", **params: Any) -> MisRankingConfig:
    """A config from a preset, overridden by explicit ``params`` (unknown names are an error)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown misranking preset {preset!r}; choose from {sorted(PRESETS)}")
    known = {f.name for f in dataclasses.fields(MisRankingConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown misranking parameter(s) {unknown}; known: {sorted(known)}")
    return MisRankingConfig(**{**PRESETS[preset], **params})


def default_params() -> dict[str, Any]:
    """The cpu preset as a plain dict: the defaults the attack registers with."""
    return {"preset": "cpu", **dataclasses.asdict(MisRankingConfig())}
