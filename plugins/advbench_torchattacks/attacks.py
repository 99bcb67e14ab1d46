"""The attacks this plugin builds: any supported torchattacks class, and a feature-space PGD."""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advbench.api import AdvbenchError, Attack, FeatureBank, Victim
from advbench_torchattacks.catalog import ALPHA_PER_STEP, SUPPORTED, UNSUPPORTED
from advbench_torchattacks.wrapper import PrototypeClassifier


def attack_class(name: str) -> type:
    """The torchattacks class called ``name``, or a one-line error saying why it is not usable."""
    import torchattacks

    if name in UNSUPPORTED:
        raise AdvbenchError(f"torchattacks:{name} is not supported: {UNSUPPORTED[name]}")
    if name not in SUPPORTED:
        raise AdvbenchError(
            f"torchattacks has no L∞ attack {name!r}; supported: {', '.join(sorted(SUPPORTED))}"
        )
    return getattr(torchattacks, name)


class TorchattacksAttack(Attack):
    """A torchattacks attack run on the victim's :class:`PrototypeClassifier`.

    ``eps`` is in 1/255 units. When not given, iterative attacks take ``alpha = 2.5 * eps / steps``
    (Madry et al.'s rule), so a sweep over eps keeps the same schedule. Other keyword parameters
    go to the torchattacks constructor unchanged.

    The prototype classifier is built once per (source victim, gallery) pair and reused across
    query batches (:meth:`classifier`); ``classifier_type`` is the class it builds.
    """

    classifier_type: type[PrototypeClassifier] = PrototypeClassifier

    def __init__(self, class_name: str, eps: float = 16.0, scale: float = 16.0, **params: Any) -> None:
        super().__init__(eps=eps, **params)
        self.cls = attack_class(class_name)
        self.name = class_name.lower()
        self.scale = scale
        accepted = inspect.signature(self.cls.__init__).parameters
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise AdvbenchError(
                f"torchattacks.{class_name} takes no parameter(s) {', '.join(unknown)}; it takes {', '.join(p for p in accepted if p not in ('self', 'model'))}"
            )
        self.kwargs = dict(params)
        self.kwargs[SUPPORTED[class_name]] = self.eps / 255.0
        if "alpha" in accepted and "steps" in accepted and "alpha" not in params:
            steps = params.get("steps", accepted["steps"].default)
            self.kwargs["alpha"] = ALPHA_PER_STEP * self.eps / 255.0 / steps
        self._accepts_n_classes = "n_classes" in accepted
        self._classifier: PrototypeClassifier | None = None
        self._classifier_gallery: FeatureBank | None = None

    def classifier(self, victim: Victim, gallery: FeatureBank) -> PrototypeClassifier:
        """The prototype classifier of ``victim`` over ``gallery``, rebuilt only when either changes.

        The runner calls :meth:`perturb` once per query batch with the same victim and gallery, and
        rebuilding the prototypes every time was most of an FGSM batch (77% at MSMT17 size, 82,161
        x 2048-d gallery). The key is object identity, not content, so it costs nothing to check; the
        last pair is kept alive until another replaces it.
        """
        cached = self._classifier
        if cached is None or cached.victim is not victim or self._classifier_gallery is not gallery:
            cached = self._classifier = self.classifier_type(victim, gallery, self.scale)
            self._classifier_gallery = gallery
        return cached

    def perturb(
        self,
        victim: Victim,
        images: Tensor,
        pids: Tensor,
        camids: Tensor,
        *,
        gallery: FeatureBank | None = None,
    ) -> Tensor:
        if gallery is None:
            raise AdvbenchError(
                f"{self.name} needs the source victim's gallery features (prototype classifier)"
            )
        model = self.classifier(victim, gallery)
        kwargs = dict(self.kwargs)
        if self._accepts_n_classes:
            kwargs["n_classes"] = model.num_classes
        atk = self.cls(model, **kwargs)
        atk.set_device(images.device)
        # torchattacks runs the model in eval mode, then calls model.train() on the whole wrapper
        # because a fresh wrapper reports training=True: that left the victim (BatchNorm included)
        # in training mode, so later forwards used batch statistics and moved its running stats.
        modes = [module.training for module in victim.modules()]
        try:
            return atk(images, model.labels(images, pids))
        finally:
            for module, mode in zip(victim.modules(), modes, strict=True):
                module.training = mode


class FeaturePGD(Attack):
    """PGD that pushes the embedding away from its clean value: maximise 1 - cos(f(x'), f(x)).

    Needs neither labels nor a gallery, so it measures the victim's embedding alone. Same budget,
    schedule (alpha = 2.5 * eps / steps) and random start as ``pgd``.
    """

    name = "feature-pgd"

    def __init__(
        self, eps: float = 16.0, steps: int = 10, random_start: bool = True, alpha: float | None = None
    ) -> None:
        super().__init__(eps=eps, steps=steps, random_start=random_start, alpha=alpha)
        if steps < 1:
            raise AdvbenchError(f"feature-pgd needs steps >= 1, got {steps}")
        self.steps = int(steps)
        self.random_start = bool(random_start)
        self.alpha = (alpha if alpha is not None else ALPHA_PER_STEP * self.eps / self.steps) / 255.0

    def perturb(
        self,
        victim: Victim,
        images: Tensor,
        pids: Tensor,
        camids: Tensor,
        *,
        gallery: FeatureBank | None = None,
    ) -> Tensor:
        eps = self.eps / 255.0
        with torch.no_grad():
            clean = F.normalize(victim.features(images), dim=1)
        adv = images.clone()
        if self.random_start:
            adv = (adv + torch.empty_like(adv).uniform_(-eps, eps)).clamp(0, 1)
        for _ in range(self.steps):
            adv.requires_grad_(True)
            loss = (1 - (F.normalize(victim.features(adv), dim=1) * clean).sum(dim=1)).sum()
            (grad,) = torch.autograd.grad(loss, adv)
            with torch.no_grad():
                adv = adv + self.alpha * grad.sign()
                adv = (images + (adv - images).clamp(-eps, eps)).clamp(0, 1)
        return adv.detach()
