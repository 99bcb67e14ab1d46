"""A victim behind an input defence, as an adaptive white-box attacker sees it.

:class:`DefendedVictim` is a :class:`~advbench.api.Victim` whose features are those of the
defended images, written so that gradients reach the pixels whatever the defence is:

* a differentiable defence is differentiated through directly;
* a non-differentiable one (JPEG, bit-depth reduction) by BPDA, Backward Pass Differentiable
  Approximation (Athalye et al., ICML 2018, "Obfuscated Gradients Give a False Sense of Security"):
  the forward pass is ``defence(x)``, the backward pass the identity, ``x + (defence(x) - x).detach()``;
* a randomized one (random resize-and-pad) by EOT, Expectation over Transformation (Athalye et al.,
  ICML 2018, "Synthesizing Robust Adversarial Examples"): the mean of the features (logits) over
  ``defence.draws`` draws.

Seeding (deterministic runs, fresh draws per step): a DefendedVictim owns one CPU generator seeded
with ``seed`` when it is built (and by :meth:`DefendedVictim.reseed`); every call takes its draws
from it in turn, so successive attack steps see new transformations, as EOT wants, and the same
seed with the same sequence of calls gives the same result. :func:`defended_features`, for
evaluation, seeds a fresh generator with its ``seed`` at each call; derive that seed from the cell
and batch, and keep it apart from the attacker's, so that the attack cannot fit the evaluated draws.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from advbench.api import AdvbenchError, InputDefence, Victim

__all__ = ["DefendedVictim", "bpda", "defended_features", "num_draws"]


def num_draws(defence: InputDefence) -> int:
    """How many draws evaluate ``defence``: ``draws`` when randomized, else 1."""
    return max(1, int(defence.draws)) if defence.randomized else 1


def bpda(images: Tensor, defended: Tensor) -> Tensor:
    """``defended`` in the forward pass, identity gradient to ``images`` in the backward pass."""
    return images + (defended - images).detach()


def _adaptive_view(defence: InputDefence, images: Tensor, generator: torch.Generator) -> Tensor:
    """One draw of the defence, differentiable with respect to ``images`` (directly or by BPDA)."""
    if defence.differentiable:
        return defence(images, generator)
    with torch.no_grad():
        defended = defence(images.detach(), generator)
    return bpda(images, defended)


def _check_defence(defence: object) -> InputDefence:
    if not isinstance(defence, InputDefence):
        raise AdvbenchError(
            f"{type(defence).__name__} is not an input defence; ranking defences (re-ranking) act on "
            "distances and are applied to the victim's distance matrix, not wrapped around the victim"
        )
    return defence


class DefendedVictim(Victim):
    """``victim`` seeing ``defence(images)``, differentiable for adaptive attacks (see the module)."""

    def __init__(self, victim: Victim, defence: InputDefence, *, seed: int = 0) -> None:
        super().__init__()
        self.victim = victim
        self.defence = _check_defence(defence)
        self.input_size = victim.input_size
        self.distance = victim.distance
        self.feature_dim = victim.feature_dim
        self.num_classes = victim.num_classes
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def reseed(self, seed: int | None = None) -> None:
        """Restart the draws from ``seed`` (default: the one given at construction)."""
        self.seed = self.seed if seed is None else int(seed)
        self.generator.manual_seed(self.seed)

    def _mean_over_draws(self, images: Tensor, output: Callable[[Tensor], Tensor]) -> Tensor:
        draws = num_draws(self.defence)
        total = output(_adaptive_view(self.defence, images, self.generator))
        for _ in range(draws - 1):
            total = total + output(_adaptive_view(self.defence, images, self.generator))
        return total / draws if draws > 1 else total

    def features(self, images: Tensor) -> Tensor:
        """Features of the defended images (the EOT mean over draws for a randomized defence)."""
        return self._mean_over_draws(images, self.victim.features)

    def logits(self, images: Tensor) -> Tensor:
        """Identity logits of the defended images, through the same path as :meth:`features`."""
        return self._mean_over_draws(images, self.victim.logits)

    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(features, logits) of the same defended draws, each averaged over the draws."""
        draws = num_draws(self.defence)
        feats: Tensor | None = None
        logits: Tensor | None = None
        for _ in range(draws):
            f, z = self.victim.features_and_logits(_adaptive_view(self.defence, images, self.generator))
            feats, logits = (f, z) if feats is None or logits is None else (feats + f, logits + z)
        assert feats is not None and logits is not None
        return (feats / draws, logits / draws) if draws > 1 else (feats, logits)


def defended_features(victim: Victim, defence: InputDefence, images: Tensor, *, seed: int) -> list[Tensor]:
    """The victim's features of each evaluation draw of ``defence(images)`` (one for a fixed defence).

    Draws come in turn from a generator seeded with ``seed`` at this call. Gradients are the
    caller's business (wrap in :func:`torch.no_grad` for evaluation).
    """
    defence = _check_defence(defence)
    generator = torch.Generator().manual_seed(int(seed))
    return [victim.features(defence(images, generator)) for _ in range(num_draws(defence))]
