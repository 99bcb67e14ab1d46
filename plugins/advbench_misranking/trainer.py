"""The GAN training loop: P x K batches of the train split, one discriminator and one generator step each.

Per step: ``δ = bound(G(x))`` (times the top-k mask in controllable mode), ``x̂ = clip(x + δ, 0, 1)``;
the discriminator learns real pairs vs ``[x, x̂]`` on all three scales (least squares); the generator
minimises ``w_gan·L_GAN + w_rank·L_misrank + w_xent·L_xent + w_percep·(1 - MS-SSIM)`` through the frozen
victim. The best epoch is never picked on test data (the official code did): the last step is kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from advbench.api import ImageSplit, Victim
from advbench_misranking.budget import bound_perturbation
from advbench_misranking.config import MisRankingConfig
from advbench_misranking.discriminator import MultiScaleDiscriminator
from advbench_misranking.generator import ResnetGenerator
from advbench_misranking.losses import least_likely_xent, lsgan_loss, misranking_loss, perception_loss
from advbench_misranking.mask import MaskHead


@dataclass
class Networks:
    """The trainable parts: the generator, the optional mask head (both in the generator's optimiser),
    and the multi-stage discriminator."""

    generator: ResnetGenerator
    discriminator: MultiScaleDiscriminator
    mask_head: MaskHead | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def generator_parameters(self) -> list[torch.nn.Parameter]:
        params = list(self.generator.parameters())
        if self.mask_head is not None:
            params += list(self.mask_head.parameters())
        return params


def fit_seed(config: MisRankingConfig) -> int:
    """The seed of a fit: ``config.seed`` when given, else one draw from the global torch generator,
    which the runner seeds from the fit's key (so it follows ``--seed``, as every other fit does)."""
    if config.seed is not None:
        return int(config.seed)
    return int(torch.randint(2**31 - 1, ()))


def build_networks(config: MisRankingConfig, device: torch.device | str = "cpu", seed: int = 0) -> Networks:
    """Fresh networks, initialised from ``seed`` without touching the global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        nets = Networks(
            generator=ResnetGenerator(config.ngf, config.n_blocks, config.norm),
            discriminator=MultiScaleDiscriminator(config.ndf, config.d_layers, num_scales=3),
            mask_head=MaskHead(config.mask_width) if config.k is not None else None,
        )
    for module in (nets.generator, nets.discriminator, nets.mask_head):
        if module is not None:  # channels-last convolutions: measured 15-50% faster on CPU
            module.to(device, memory_format=torch.channels_last)
    return nets


def make_adversarial(
    nets: Networks, clean: Tensor, eps: float, config: MisRankingConfig, noise: torch.Generator | None = None
) -> Tensor:
    """``clip(clean + δ ⊙ M, 0, 1)`` with ``|δ| <= eps`` (eps in [0, 1] units); M = 1 without a mask."""
    delta = bound_perturbation(nets.generator(clean), eps, config.bound)
    if nets.mask_head is not None and config.k is not None:
        delta = delta * nets.mask_head.mask(clean, (clean + delta).detach(), config.k, noise)
    return (clean + delta).clamp(0.0, 1.0)


def pk_batches(pids: Tensor, p: int, k: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless P x K index batches, grouped by identity (K consecutive images per id).

    Identities with fewer than K images are sampled with replacement; with fewer than P identities
    all of them are used.
    """
    pids = pids.cpu()
    ids = pids.unique()
    if len(ids) < 2:
        raise ValueError("the mis-ranking loss needs at least two training identities")
    members = [torch.nonzero(pids == i).flatten() for i in ids]
    p = min(p, len(ids))
    while True:
        chosen = torch.randperm(len(ids), generator=generator)[:p]
        rows = []
        for c in chosen.tolist():
            m = members[c]
            if len(m) >= k:
                rows.append(m[torch.randperm(len(m), generator=generator)[:k]])
            else:
                rows.append(m[torch.randint(len(m), (k,), generator=generator)])
        yield torch.cat(rows)


def victim_outputs(victim: Victim, images: Tensor, need_logits: bool) -> tuple[Tensor, Tensor | None]:
    """The victim's test feature and, when asked, its identity logits (one shared pass when the
    victim overrides :meth:`Victim.features_and_logits`)."""
    if not need_logits:
        return victim.features(images), None
    return victim.features_and_logits(images)


def _real_candidates(clean: Tensor, config: MisRankingConfig) -> Tensor:
    if config.real_pair == "self":
        return clean
    # K consecutive images per id: shifting by K * (P // 2) pairs every image with another identity.
    return clean.roll(config.batch_k * max(1, len(clean) // config.batch_k // 2), dims=0)


class GanTrainer:
    """One Mis-Ranking fit: networks, optimisers and the P x K sampler; :meth:`step` is one D + G update."""

    def __init__(
        self,
        victim: Victim,
        train: ImageSplit,
        config: MisRankingConfig,
        eps: float,
        device: torch.device | str = "cpu",
    ) -> None:
        self.victim, self.train, self.config = victim, train, config
        self.eps = eps / 255.0
        self.device = torch.device(device)
        self.seed = fit_seed(config)
        self.nets = build_networks(config, self.device, self.seed)
        self.rng = torch.Generator().manual_seed(self.seed)
        self.use_xent = config.w_xent > 0 and victim.num_classes > 0
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.nets.generator_parameters(), lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.nets.discriminator.parameters(), lr=config.lr, betas=betas)
        self.batches = pk_batches(train.pids, config.batch_p, config.batch_k, self.rng)

    @property
    def total_steps(self) -> int:
        """``config.steps``, or ``epochs`` x #ids / P when epochs are given (the official epoch length)."""
        if self.config.epochs is None:
            return self.config.steps
        return max(1, math.ceil(self.config.epochs * len(self.train.pids.unique()) / self.config.batch_p))

    def step(self) -> dict[str, float]:
        """One discriminator update then one generator (and mask head) update; returns the losses."""
        config, nets = self.config, self.nets
        nets.generator.train()
        nets.discriminator.train()
        if nets.mask_head is not None:
            nets.mask_head.train()
        index = next(self.batches)
        clean = self.train.batch(index, self.device)
        pids = self.train.pids[index].to(self.device)
        if config.flip:
            flip = (torch.rand(len(index), generator=self.rng) < 0.5).to(self.device).view(-1, 1, 1, 1)
            clean = torch.where(flip, clean.flip(-1), clean)
        adv = make_adversarial(nets, clean, self.eps, config, self.rng)

        # Discriminator: real pairs vs [clean, adversarial], every scale.
        nets.discriminator.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d = 0.5 * (
            lsgan_loss(nets.discriminator(clean, adv.detach()), real=False)
            + lsgan_loss(nets.discriminator(clean, _real_candidates(clean, config)), real=True)
        )
        loss_d.backward()
        self.opt_d.step()

        # Generator (and mask head): fool D, mis-rank, mis-classify, stay close to the clean image.
        nets.discriminator.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        loss_gan = lsgan_loss(nets.discriminator(clean, adv), real=True)
        feats, logits = victim_outputs(self.victim, adv, self.use_xent)
        reference = None
        if config.ranking_ref == "clean":
            with torch.no_grad():
                reference = self.victim.features(clean)
        if self.victim.distance == "cosine":
            feats = F.normalize(feats, dim=1)
            reference = None if reference is None else F.normalize(reference, dim=1)
        loss_rank = misranking_loss(feats, pids, config.margin, reference)
        loss_xent = (
            least_likely_xent(logits, pids, config.label_smoothing)
            if logits is not None
            else feats.new_zeros(())
        )
        loss_per = perception_loss(clean, adv)
        loss_g = (
            config.w_gan * loss_gan
            + config.w_rank * loss_rank
            + config.w_xent * loss_xent
            + config.w_percep * loss_per
        )
        loss_g.backward()
        self.opt_g.step()
        nets.discriminator.requires_grad_(True)

        record = {
            "d": loss_d.item(),
            "gan": loss_gan.item(),
            "rank": loss_rank.item(),
            "xent": loss_xent.item(),
            "percep": loss_per.item(),
        }
        nets.history.append(record)
        return record

    def run(self, progress: bool = True) -> Networks:
        """All steps, with a tqdm progress bar (losses in the postfix); the last step is kept."""
        bar = tqdm(range(self.total_steps), desc="misranking fit", disable=not progress, leave=False)
        for _ in bar:
            record = self.step()
            bar.set_postfix({k: f"{v:.3f}" for k, v in record.items()}, refresh=False)
        return self.nets
