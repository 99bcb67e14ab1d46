"""Metric attacks: the furthest-negative attack (Bouniot et al., CVPRW 2020) and the metric FGSM /
I-FGSM of Bai et al. (TPAMI, arXiv 1901.10650)."""

from __future__ import annotations

import torch
from torch import Tensor

from advbench.api import AdvbenchError, Attack, FeatureBank, Targets, Victim
from advbench_ranking.common import _features, _gallery
from advbench_ranking.losses import (
    furthest_negative_loss,
    guide_sets,
    identity_prototypes,
    metric_loss,
    pairwise_distances,
)
from advbench_ranking.pgd import linf_ascent, schedule


class _PrototypeCache:
    """The identity prototypes of the last gallery seen (object identity, as torchattacks' classifier)."""

    def __init__(self) -> None:
        self._key: tuple[int, str, torch.device] | None = None
        self._value: tuple[Tensor, Tensor] | None = None
        self._gallery: FeatureBank | None = None

    def get(self, gallery: FeatureBank, feats: Tensor, pids: Tensor, distance: str) -> tuple[Tensor, Tensor]:
        key = (id(gallery), distance, feats.device)
        if self._value is None or self._key != key or self._gallery is not gallery:
            self._value = identity_prototypes(feats, pids, distance)  # type: ignore[arg-type]
            self._key, self._gallery = key, gallery
        return self._value


class FurthestNegativeAttack(Attack):
    """Furthest-Negative Attack (Bouniot, Audigier, Loesch, "Vulnerability of Person Re-Identification
    Models to Metric Adversarial Attacks", CVPR Workshops 2020; official code
    https://github.com/CEA-LIST/adv-reid, ``perturb_queries_hardest_multi`` and ``max_min_mse``).

    Untargeted, on the queries, with labels and the gallery. Loss, maximised::

        L = sum_{p in P} d(f(x'), p) - d(f(x'), mu_far)

    Pushing guides P: the query's own clean feature and the gallery images of its identity (from
    other cameras by default, the true matches the protocol scores; ``cross_camera=False`` takes
    the same-camera junk too). Pulling guide ``mu_far``: the prototype (mean feature) of the gallery
    identity furthest from the clean query, every other label counting. The official code draws its
    guides from the query set itself and pads each identity's pushing set with the image's own
    feature; advbench's attacker knows the gallery, so the guides come from there, the own feature
    counted once. ``d`` is the victim's distance (official: squared L2 of the features, normalised
    for cosine models, i.e. 2 x advbench's cosine distance for single guides).

    Schedule: advbench's PGD-10 (``alpha = 2.5 * eps / steps``, random start) so that FNA differs
    from ``pgd`` / ``feature-pgd`` by its loss only; the paper's is 15 steps of 1/255 without random
    start (``steps=15, alpha=1, random_start=False``).
    """

    name = "fna"

    def __init__(
        self,
        eps: float = 16.0,
        steps: int = 10,
        alpha: float | None = None,
        random_start: bool = True,
        cross_camera: bool = True,
    ) -> None:
        super().__init__(
            eps=eps, steps=steps, alpha=alpha, random_start=random_start, cross_camera=cross_camera
        )
        self.steps, self.alpha = schedule(self.name, self.eps, steps, alpha)
        self.random_start = bool(random_start)
        self.cross_camera = bool(cross_camera)
        self._prototypes = _PrototypeCache()

    def perturb(
        self,
        victim: Victim,
        images: Tensor,
        pids: Tensor,
        camids: Tensor,
        *,
        gallery: FeatureBank | None = None,
        targets: Targets | None = None,
    ) -> Tensor:
        feats, g_pids, g_cams = _gallery(self.name, gallery, images.device)
        assert gallery is not None
        distance = victim.distance
        protos, proto_pids = self._prototypes.get(gallery, feats, g_pids, distance)
        pids, camids = pids.to(images.device), camids.to(images.device)
        with torch.no_grad():
            clean = _features(victim, images)
            d = pairwise_distances(clean, protos, distance)
            own = proto_pids[None, :] == pids[:, None]
            if bool(own.all(dim=1).any()):
                raise AdvbenchError(f"{self.name} needs a gallery with an identity other than the query's")
            pull = protos[d.masked_fill(own, float("-inf")).argmax(dim=1)]  # [B, D]
        rows, mask = guide_sets(pids, camids, g_pids, g_cams, cross_camera=self.cross_camera)
        push = torch.cat([clean[:, None, :], feats[rows]], dim=1)
        mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)

        def loss(adv: Tensor) -> Tensor:
            return furthest_negative_loss(_features(victim, adv), push, mask, pull, distance)

        return linf_ascent(
            images,
            loss,
            eps=self.eps / 255.0,
            steps=self.steps,
            alpha=self.alpha,
            random_start=self.random_start,
        )


def kurakin_steps(eps: float) -> int:
    """Bai et al.'s (after Kurakin et al., 2017) I-FGSM iterations: ``int(min(eps + 4, 1.25 eps))``, >= 1."""
    return max(1, int(min(eps + 4.0, 1.25 * eps)))


class MetricFGSM(Attack):
    """Adversarial metric attack, metric-FGSM / I-FGSM / MI-FGSM (Bai, Li, Zhou, Li, Torr,
    "Adversarial Metric Attack and Defense for Person Re-identification", TPAMI; arXiv 1901.10650;
    official code https://github.com/SongBaiHust/Adversarial_Metric_Attack, ``Gen_Adv.py``).

    Non-targeted metric loss, maximised: ``L = sum_{g in P(q)} d(f(x'), f(g))`` over the gallery
    images ``P(q)`` of the query's identity (other cameras by default, the true matches; the official
    code takes all of them). The official code perturbs the gallery against the probes of its
    identity; the loss is symmetric in the pair, and advbench perturbs queries, so the roles swap.
    ``d`` is the victim's distance (official: ``MSELoss`` of L2-normalised features, proportional
    to advbench's cosine distance). A query without a true match in the gallery is left unchanged
    (it has no guide, and the evaluation skips it).

    One class, two specs, because the paper reports them as two attacks with their own schedules:

    * ``metric-fgsm``: one step of size ``eps`` (``steps=1``);
    * ``metric-ifgsm``: ``steps="auto"`` = the paper's ``int(min(eps + 4, 1.25 eps))`` iterations of
      ``alpha = 1`` (1/255), no random start: 20 steps at eps = 16, 10 at eps = 8.
      ``momentum=1`` gives the paper's MI-FGSM (gradients normalised by their mean absolute value).

    With an explicit ``steps`` > 1 and no ``alpha``, advbench's ``alpha = 2.5 * eps / steps``.
    """

    def __init__(
        self,
        eps: float = 16.0,
        steps: int | str = "auto",
        alpha: float | None = None,
        momentum: float = 0.0,
        random_start: bool = False,
        cross_camera: bool = True,
        name: str = "metric-ifgsm",
    ) -> None:
        super().__init__(
            eps=eps,
            steps=steps,
            alpha=alpha,
            momentum=momentum,
            random_start=random_start,
            cross_camera=cross_camera,
        )
        self.name = name
        if steps == "auto":
            self.steps, self.alpha = schedule(
                name, self.eps, kurakin_steps(self.eps), alpha if alpha is not None else 1.0
            )
        elif isinstance(steps, int) and steps == 1 and alpha is None:
            self.steps, self.alpha = 1, self.eps / 255.0
        elif isinstance(steps, int) and not isinstance(steps, bool):
            self.steps, self.alpha = schedule(name, self.eps, steps, alpha)
        else:
            raise AdvbenchError(f"{name} needs steps 'auto' or an int >= 1, got {steps!r}")
        if float(momentum) < 0:
            raise AdvbenchError(f"{name} needs momentum >= 0, got {momentum}")
        self.momentum = float(momentum)
        self.random_start = bool(random_start)
        self.cross_camera = bool(cross_camera)

    def perturb(
        self,
        victim: Victim,
        images: Tensor,
        pids: Tensor,
        camids: Tensor,
        *,
        gallery: FeatureBank | None = None,
        targets: Targets | None = None,
    ) -> Tensor:
        feats, g_pids, g_cams = _gallery(self.name, gallery, images.device)
        rows, mask = guide_sets(
            pids.to(images.device), camids.to(images.device), g_pids, g_cams, cross_camera=self.cross_camera
        )
        guides = feats[rows]
        distance = victim.distance

        def loss(adv: Tensor) -> Tensor:
            return metric_loss(_features(victim, adv), guides, mask, distance)

        return linf_ascent(
            images,
            loss,
            eps=self.eps / 255.0,
            steps=self.steps,
            alpha=self.alpha,
            random_start=self.random_start,
            momentum=self.momentum,
        )
