"""``UniversalRetrievalAttack``: one image-agnostic query perturbation learnt on a train split.

Li, Ji, Liu, Hong, Gao and Tian, "Universal Perturbation Attack Against Image Retrieval" (ICCV 2019),
after the universal adversarial perturbations of Moosavi-Dezfooli et al. (CVPR 2017): a single δ,
‖δ‖∞ ≤ eps, that breaks the neighbourhood relationships of the victim's features for most queries.
Re-implemented from the behaviour of the official code (GitHub theFool32/UAP_retrieval); no code is
copied. What is kept: k-means centres of the clean train features as the neighbourhood, the point-,
pair-, list- and label-wise losses (:mod:`advbench_universal.losses`), the optimiser (sign of a
momentum-accumulated, L1-normalised gradient, step eps / 10, exp(-0.01) decay per pass, the
halve-on-saturation rescale), δ starting at zero, the last δ kept.
δ starts at zero as officially, except (``init="auto"``) for the point- and label-wise losses
alone, whose gradient vanishes there: they start uniform in the ball.

Deviations (for re-ID, at CPU scale): no multi-scale random resizing (re-ID crops have one size, so δ
lives at the victim's input size and a query of another size is an error); mini-batches instead of
batch 1; fewer centres and a bounded pool; the best epoch is not chosen on test queries (officially it
was); label-wise uses a nearest-centroid classifier instead of a trained MLP; list-wise uses graded
LambdaRank gains (officially unit gains); a Euclidean victim's features are scaled by their mean
norm. The ranking-distillation step of the paper (a surrogate for a black-box victim) is not part of
this attack: advbench measures transfer by crafting on one victim and scoring on others.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from advbench.api import AdvbenchError, Attack, FeatureBank, ImageSplit, Victim
from advbench.io import atomic_torch_save, load_torch_verified
from advbench_universal.config import UniversalConfig, make_config
from advbench_universal.losses import kmeans, retrieval_space, universal_loss

FORMAT = 1
NAME = "uap-retrieval"
SATURATION_CHANGE = 1e-5  # the official rescale thresholds
SATURATION_MIN = 0.5


def _size(shape: Any) -> str:
    return "x".join(str(int(s)) for s in shape)


@torch.no_grad()
def _features(victim: Victim, split: ImageSplit, index: Tensor, device: torch.device, chunk: int) -> Tensor:
    return torch.cat(
        [victim.features(split.batch(index[s : s + chunk], device)) for s in range(0, len(index), chunk)]
    )


class UniversalRetrievalAttack(Attack):
    """Li et al. (ICCV 2019): ``clip(x + δ, 0, 1)`` with one δ learnt on the source victim's train split.

    ``eps`` in 1/255 units; params are the fields of :class:`~advbench_universal.config.UniversalConfig`.
    After :meth:`fit`, ``delta`` is the learnt ``[3, H, W]`` perturbation (in [0, 1] units),
    ``history`` the per-step losses and ``loaded_from_cache`` whether it came from the cache.
    """

    name = NAME

    def __init__(self, eps: float = 16.0, **params: Any) -> None:
        try:
            self.config: UniversalConfig = make_config(**params)
        except (TypeError, ValueError) as exc:
            raise AdvbenchError(str(exc)) from exc
        super().__init__(eps, **dataclasses.asdict(self.config))
        self.delta: Tensor | None = None
        self.history: list[float] = []
        self.loaded_from_cache = False

    @property
    def lr(self) -> float:
        """The signed step in 1/255 units (eps / 10 unless given)."""
        return self.eps / 10.0 if self.config.lr is None else float(self.config.lr)

    def _random_start(self) -> bool:
        if self.config.init == "auto":
            return not {"pair", "list"} & set(self.config.losses)
        return self.config.init == "uniform"

    def settings(self) -> dict[str, Any]:
        """What δ depends on besides victim and data: checked when a cache entry is loaded."""
        return {"eps": self.eps, **dataclasses.asdict(self.config)}

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
        """Load ``cache_dir / f"{key}.pt"`` when it is there and intact (a damaged entry is reported,
        removed and learnt again), else learn δ on ``train`` and save it there atomically."""
        size = tuple(int(s) for s in victim.input_size)
        if tuple(train.images.shape[-2:]) != size:
            raise AdvbenchError(
                f"{NAME}: the train split is {_size(train.images.shape[-2:])} but the victim takes {_size(size)}; "
                "fit on a dataset with the victim's crop size"
            )
        path = Path(cache_dir) / f"{key}.pt"
        state = load_torch_verified(path)
        if state is not None:
            if state.get("format") != FORMAT or state.get("settings") != self.settings():
                raise AdvbenchError(
                    f"{NAME} cache {path} was written for other parameters; delete it to refit"
                )
            self.delta, self.history = state["delta"], list(state.get("history") or [])
            self.loaded_from_cache = True
            return
        # the runner seeds the global generator from the fit key; draw ours from it
        generator = torch.Generator().manual_seed(int(torch.randint(2**31 - 1, ())))
        self.delta, self.history = self._learn(victim, train, torch.device(device), generator, progress)
        self.loaded_from_cache = False
        atomic_torch_save(
            {"format": FORMAT, "settings": self.settings(), "delta": self.delta, "history": self.history},
            path,
        )

    def _learn(
        self,
        victim: Victim,
        train: ImageSplit,
        device: torch.device,
        generator: torch.Generator,
        progress: bool,
    ) -> tuple[Tensor, list[float]]:
        config = self.config
        eps, lr = self.eps / 255.0, self.lr / 255.0
        n = len(train)
        pool = torch.randperm(n, generator=generator)[: min(config.pool, n)]
        feats = _features(victim, train, pool, device, max(config.batch_size, 64))
        norm = float(feats.norm(dim=1).mean().clamp_min(1e-12))
        clean_all = retrieval_space(feats, victim.distance, norm)
        centres = kmeans(clean_all, config.clusters, config.kmeans_iters, generator)

        _, c, h, w = train.images.shape
        delta = torch.zeros((c, h, w), device=device)
        if self._random_start():  # point- or label-wise alone are stationary at δ = 0
            delta = (torch.rand((c, h, w), generator=generator) * 2 - 1).mul_(eps).to(device)
        buf = torch.zeros_like(delta)
        batch = min(config.batch_size, len(pool))
        per_pass = math.ceil(len(pool) / batch)
        order = torch.empty(0, dtype=torch.long)
        sat_prev, history = 0.0, []
        bar = tqdm(range(config.steps), desc=f"{NAME} fit", disable=not progress, leave=False)
        for step in bar:
            if step % per_pass == 0:  # a new pass over the pool: shuffle, decay, maybe rescale
                order = torch.randperm(len(pool), generator=generator)
                if config.rescale:
                    sat = float((delta.abs() >= eps - 1e-9).float().mean())
                    if abs(sat - sat_prev) < SATURATION_CHANGE and sat > SATURATION_MIN:
                        delta = delta / 2
                    sat_prev = sat
            rows = order[(step % per_pass) * batch :][:batch]
            images = train.batch(pool[rows], device)
            clean = clean_all[rows.to(device)]
            delta.requires_grad_(True)
            adv = retrieval_space(victim.features((images + delta).clamp(0.0, 1.0)), victim.distance, norm)
            loss = universal_loss(config.losses, adv, clean, centres, config.margin, config.scale)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = delta.detach()
            buf = config.momentum * buf + grad / (grad.abs().sum() + 1e-12)
            step_size = lr * math.exp(-config.lr_decay * (step // per_pass))
            delta = (delta - step_size * buf.sign()).clamp_(-eps, eps)
            history.append(float(loss.detach()))
            bar.set_postfix({"loss": f"{history[-1]:.3f}"}, refresh=False)
        return delta.cpu(), history

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
        """``clip(images + δ, 0, 1)``: the same δ for every query (no per-query optimisation)."""
        if self.delta is None:
            raise AdvbenchError(f"{NAME}: fit() must run before perturb()")
        if tuple(self.delta.shape) != tuple(images.shape[1:]):
            raise AdvbenchError(
                f"{NAME}: δ was fitted at {_size(self.delta.shape[1:])} but the queries are "
                f"{_size(images.shape[2:])}; fit on a dataset with the same crop size"
            )
        eps = self.eps / 255.0
        delta = self.delta.to(images.device, images.dtype).clamp(-eps, eps)
        return (images + delta).clamp(0.0, 1.0)
