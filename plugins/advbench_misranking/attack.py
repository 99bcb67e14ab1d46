"""``MisRankingAttack``: fit a perturbation generator on a train split once, then one pass per query batch.

Mis-Ranking GAN (Wang et al., CVPR 2020, "Transferable, Controllable, and Inconspicuous Adversarial
Attacks on Person Re-identification With Deep Mis-Ranking"), re-implemented from the paper and the
behaviour of the official code (GitHub whj363636/Adversarial-attack-on-Person-ReID-With-Deep-Mis-Ranking);
no official code is used.

Deviations from the official code (details and reasons in docs/misranking.md):

1. All three discriminator scales train (officially only the 1/4 one did).
2. The mis-ranking loss excludes the anchor from the nearest same-identity search, and neither re-ID
   loss is wrapped in ``log`` (``log 0`` once the hinge is satisfied).
3. The mask head and its temperature train with the generator (officially their gradients were
   erased); at test time the top-k is deterministic. Selected pixels change by at least one grey level
   so that exactly k pixels differ even after 8-bit quantisation.
4. The perturbation lives in [0, 1] pixel space, is zero-centred and L∞-bounded per pixel; adversarial
   images are clipped to [0, 1] during training too (officially: normalised space, a mean shift, no
   clipping).
5. The checkpoint is the last step, never one chosen on test queries.
6. The D "real" pair is the clean image twice by default (``real_pair="self"``); ``"other"`` restores the
   official pair of two different identities. The mis-ranking references default to the clean batch
   features (``ranking_ref="clean"``), matching a protocol in which only queries are perturbed.
7. The official per-channel rescale, effectively straight-through, is ``bound="st"``; the default
   ``bound="tanh"`` bounds each pixel on its own (in short fits ``st`` collapsed to faint patterns on two
   of the three default victims).
8. Small-init last conv, [0, 1]->[-1, 1] generator input, MS-SSIM on [0, 1] with fitted windows, a
   CPU-sized default preset (``preset="paper"`` gives the official widths and 40 epochs).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from advbench.api import AdvbenchError, Attack, FeatureBank, ImageSplit, Victim
from advbench.io import atomic_torch_save, load_torch_verified
from advbench_misranking.budget import bound_perturbation
from advbench_misranking.config import MisRankingConfig, make_config
from advbench_misranking.trainer import GanTrainer, Networks, build_networks

FORMAT = 1


def _visible_topk(clean: Tensor, delta: Tensor, mask: Tensor, eps: float) -> Tensor:
    """Restrict ``delta`` to the mask and make every selected pixel change by >= one grey level.

    A selected value smaller than 1/255 (or one that clipping would undo) is replaced by ±1/255 (capped by
    eps), flipping its sign where the clean value sits at the range end.
    """
    step = min(1.0 / 255.0, eps)
    selected = mask > 0.5
    d = torch.where(delta >= 0, 1.0, -1.0) * delta.abs().clamp(min=step, max=eps)
    undone = (clean + d).clamp(0.0, 1.0) == clean
    d = torch.where(undone, -d, d)
    return torch.where(selected, d, torch.zeros_like(d))


class MisRankingAttack(Attack):
    """Mis-Ranking GAN: a generator trained against a source victim, applied feed-forward to queries.

    ``eps`` in 1/255 units; ``preset`` ("cpu" or "paper") then any :class:`MisRankingConfig` field.
    """

    name = "misranking"

    def __init__(self, eps: float = 16.0, preset: str = "cpu", **params: Any) -> None:
        super().__init__(eps, preset=preset, **params)
        try:
            self.config: MisRankingConfig = make_config(preset, **params)
        except ValueError as exc:
            raise AdvbenchError(str(exc)) from exc
        self.nets: Networks | None = None
        self.loaded_from_cache = False

    @property
    def history(self) -> list[dict[str, float]]:
        """Per-step losses of the fit that produced the current generator."""
        return [] if self.nets is None else self.nets.history

    # ------------------------------------------------------------------------------------ fitting
    def fit(
        self,
        victim: Victim,
        train: ImageSplit,
        *,
        cache_dir: Path,
        key: str,
        device: torch.device,
        progress: bool = True,
    ) -> None:
        """Train the generator on ``train``, or load ``cache_dir / f"{key}.pt"`` when it is there and
        intact (a damaged entry is reported and trained again)."""
        path = Path(cache_dir) / f"{key}.pt"
        state = load_torch_verified(path)
        if state is not None:
            self.nets = self._load(state, path, device)
            self.loaded_from_cache = True
            return
        self.nets = GanTrainer(victim, train, self.config, self.eps, device).run(progress)
        self.loaded_from_cache = False
        self._save(path)

    def _save(self, path: Path) -> None:
        assert self.nets is not None
        state = {
            "format": FORMAT,
            "eps": self.eps,
            "config": dataclasses.asdict(self.config),
            "generator": self.nets.generator.state_dict(),
            "mask_head": None if self.nets.mask_head is None else self.nets.mask_head.state_dict(),
            "history": self.nets.history,
        }
        atomic_torch_save(state, path)

    def _load(self, state: dict[str, Any], path: Path, device: torch.device) -> Networks:
        if state.get("format") != FORMAT or state.get("config") != dataclasses.asdict(self.config):
            raise AdvbenchError(
                f"misranking cache {path} was written for other parameters; delete it to refit"
            )
        nets = build_networks(self.config, device)
        nets.generator.load_state_dict(state["generator"])
        if nets.mask_head is not None:
            nets.mask_head.load_state_dict(state["mask_head"])
        nets.history = list(state.get("history") or [])
        return nets

    # ------------------------------------------------------------------------------------ attacking
    @torch.no_grad()
    def perturb(
        self,
        victim: Victim,
        images: Tensor,
        pids: Tensor,
        camids: Tensor,
        *,
        gallery: FeatureBank | None = None,
    ) -> Tensor:
        """One generator pass (in chunks of ``config.chunk``): adversarial images in [0, 1]."""
        if self.nets is None:
            raise AdvbenchError("misranking: fit() must run before perturb()")
        generator, mask_head = self.nets.generator, self.nets.mask_head
        generator.to(images.device).eval()
        if mask_head is not None:
            mask_head.to(images.device).eval()
        eps = self.eps / 255.0
        out = []
        for clean in images.split(self.config.chunk):
            delta = bound_perturbation(generator(clean), eps, self.config.bound).clamp(-eps, eps)
            if mask_head is not None and self.config.k is not None:
                mask = mask_head.mask(clean, clean + delta, self.config.k)
                delta = _visible_topk(clean, delta, mask, eps)
            out.append((clean + delta).clamp(0.0, 1.0))
        return torch.cat(out).contiguous()
