"""Robust victims: PGD adversarial training (Madry et al., "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018, https://arxiv.org/abs/1706.06083) inside advbench's re-ID training loop.

Each training batch is replaced by PGD examples crafted against the current model on the very loss
the step optimises (ID loss + batch-hard triplet, :func:`advbench.training.reid_loss`): L∞ ball of
``eps``/255, random start, ``steps`` signed-gradient steps of ``2.5 * eps / steps`` (Madry et al.'s
step-size rule). A robust victim is named ``<victim>@at<eps>`` (``resnet10t@at4``,
``timm:resnet18@at4``), with ``s<steps>`` appended when the steps are not the default
(``resnet10t@at8s5``); the name is the recipe's one spelling, so two names never mean one recipe.

Crafting runs the model in **train mode**: BatchNorm normalises with the batch's own statistics,
as in the training step the examples are made for (eval mode would use running averages that are
meaningless early in training). The running statistics are put back after crafting, so that only
the training forward passes update them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advbench.api import AdvbenchError

METHODS = ("pgd",)
DEFAULT_EPS = 4.0
DEFAULT_STEPS = 3
SUFFIX_RE = re.compile(r"at(?P<eps>\d+(?:\.\d+)?)(?:s(?P<steps>\d+))?\Z")


@dataclass(frozen=True)
class AdversarialRecipe:
    """How a robust victim's training batches are made adversarial; part of its checkpoint's key.

    ``eps`` is in 1/255 pixel units like every budget in advbench.
    """

    method: str = "pgd"
    eps: float = DEFAULT_EPS
    steps: int = DEFAULT_STEPS
    random_start: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise AdvbenchError(
                f"unknown adversarial training method {self.method!r}; choose {', '.join(METHODS)}"
            )
        if not 0 < self.eps <= 255:
            raise AdvbenchError(
                f"adversarial training eps must be in (0, 255] (1/255 units), got {self.eps:g}"
            )
        if self.steps < 1:
            raise AdvbenchError(f"adversarial training needs at least one PGD step, got {self.steps}")

    @property
    def step_size(self) -> float:
        """PGD step in 1/255 units: 2.5 * eps / steps, so that the steps can cross the ball."""
        return 2.5 * self.eps / self.steps

    @property
    def suffix(self) -> str:
        """The name suffix of victims trained with this recipe (``@at4``, ``@at8s5``)."""
        steps = "" if self.steps == DEFAULT_STEPS else f"s{self.steps}"
        return f"@at{self.eps:g}{steps}"


def robust_name(base: str, recipe: AdversarialRecipe) -> str:
    """The leaderboard name of ``base`` trained with ``recipe`` (``resnet10t`` -> ``resnet10t@at4``)."""
    return base + recipe.suffix


def train_name(victim: str, method: str | None, eps: float | None, steps: int | None) -> str:
    """The name ``advbench train`` trains: ``victim``, or with ``--adversarial`` its robust name."""
    if method is None:
        if eps is not None or steps is not None:
            raise AdvbenchError("--adv-eps and --adv-steps need --adversarial pgd")
        return victim
    if "@" in victim:
        raise AdvbenchError(f"--victim {victim!r} is already a robust name; drop the suffix or --adversarial")
    recipe = AdversarialRecipe(
        method=method,
        eps=DEFAULT_EPS if eps is None else eps,
        steps=DEFAULT_STEPS if steps is None else steps,
    )
    name = robust_name(victim, recipe)
    split_name(name)  # the name must read back as the same recipe (an eps such as 1e-05 does not)
    return name


def split_name(name: str) -> tuple[str, AdversarialRecipe | None]:
    """(base victim name, adversarial recipe or None) of a victim name such as ``resnet10t@at4``.

    Raises :class:`AdvbenchError` for a suffix that is not ``@at<eps>[s<steps>]`` in its one spelling.
    """
    base, sep, suffix = name.partition("@")
    if not sep:
        return name, None
    if not base:
        raise AdvbenchError(f"victim {name!r}: name the victim before the suffix (e.g. resnet10t@at4)")
    match = SUFFIX_RE.match(suffix)
    if match is None:
        raise AdvbenchError(
            f"victim {name!r}: unknown suffix {'@' + suffix!r}; a robust victim is NAME@at<eps>[s<steps>], "
            f"adversarially trained with PGD at eps/255 (e.g. resnet10t@at4)"
        )
    steps = int(match["steps"]) if match["steps"] else DEFAULT_STEPS
    try:
        recipe = AdversarialRecipe(eps=float(match["eps"]), steps=steps)
    except AdvbenchError as exc:
        raise AdvbenchError(f"victim {name!r}: {exc}") from None
    if robust_name(base, recipe) != name:
        raise AdvbenchError(f"victim {name!r}: write it as {robust_name(base, recipe)!r}")
    return base, recipe


@contextmanager
def kept_buffers(module: nn.Module) -> Iterator[None]:
    """Run a block in which forward passes may change ``module``'s buffers (BatchNorm running
    statistics), then put every buffer back as it was."""
    saved = [(buf, buf.detach().clone()) for buf in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


def pgd_examples(
    loss_of: Callable[[Tensor], Tensor],
    images: Tensor,
    recipe: AdversarialRecipe,
    generator: torch.Generator,
) -> Tensor:
    """PGD maximising ``loss_of(images + delta)`` over ‖delta‖∞ ≤ eps/255, pixels kept in [0, 1].

    The random start is drawn from ``generator`` (CPU), so a training stays reproducible.
    """
    eps, alpha = recipe.eps / 255.0, recipe.step_size / 255.0
    images = images.detach()
    delta = torch.zeros_like(images)
    if recipe.random_start:
        noise = torch.rand(images.shape, generator=generator, dtype=images.dtype)
        delta = (noise.to(images.device) * 2 - 1) * eps
    delta = ((images + delta).clamp(0, 1) - images).requires_grad_(True)
    for _ in range(recipe.steps):
        (grad,) = torch.autograd.grad(loss_of(images + delta), delta)
        with torch.no_grad():
            step = (delta + alpha * grad.sign()).clamp(-eps, eps)
            delta = ((images + step).clamp(0, 1) - images).requires_grad_(True)
    return (images + delta).detach()


def craft(
    model: nn.Module,
    images: Tensor,
    loss_of: Callable[[Tensor], Tensor],
    recipe: AdversarialRecipe,
    generator: torch.Generator,
) -> Tensor:
    """The adversarial batch that replaces ``images`` in one training step of ``model``.

    ``model`` is put in train mode for crafting (batch statistics) and its buffers are restored
    afterwards; parameter gradients are not touched (only the perturbation's are computed).
    """
    was_training = model.training
    model.train()
    try:
        with kept_buffers(model):
            return pgd_examples(loss_of, images, recipe, generator)
    finally:
        model.train(was_training)
