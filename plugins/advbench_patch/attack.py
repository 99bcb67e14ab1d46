"""advPattern-style patch attack on re-ID queries (Wang et al., "advPattern: Physical-World Attacks on
Deep Person Re-Identification via Adversarially Transformable Patterns", ICCV 2019, arXiv 1908.09327).

advPattern learns a pattern worn on the torso that either hides the adversary from a re-ID system
(*evading attack*: the patterned adversary no longer matches its own images in other cameras) or
makes it match one chosen target person (*impersonation attack*), optimised with Adam over sampled
transformations of the pattern so that it survives view, distance and lighting changes. Here, as a
digital query attack of advbench:

* geometry (:mod:`advbench_patch.geometry`): one rectangle of ``floor(area * H * W)`` pixels at most
  per query, centred (``location="fixed"``) or drawn (``"sampled"``) in the torso box;
* EOT (:mod:`advbench_patch.transforms`, Athalye et al., ICML 2018): each step averages the loss
  over ``eot_draws`` draws of the patch (identity + random scale / shift / brightness);
* patch pixels are free in [0, 1]: initialised uniformly at random, Adam on the pixels, clamped to
  [0, 1] after every step;
* the returned image is the clean image with the *untransformed* patch pasted into its rectangle,
  so at most ``floor(area * H * W)`` pixel locations change, all inside the rectangle.

Losses (``d`` is the victim's distance: 1 - cos for cosine victims, squared L2 for euclidean ones),
averaged over the EOT draws and minimised:

* evasion (``goal="untargeted"``): ``-mean_{g in O} d(f(x'), g)``, with ``O`` the query's own
  identity: its clean feature and, with a gallery, its true matches (same pid; other cameras when
  ``cross_camera``), i.e. the images the adversary must stop matching;
* impersonation (``goal="targeted"``): ``d(f(x'), t) - beta * mean_{g in O} d(f(x'), g)``, ``t``
  the mean feature of the query's chosen candidates (``targets.indices``, one identity of the
  gallery as the runner draws them). The second term (the adversary should also stop matching
  itself) is off by default (``beta = 0``): the benchmark scores the candidates' ranks.

A total-variation smoothness term (printability, as physical patch attacks use) is ``tv``
(default 0: a digital attack does not need it). No official code of advPattern was found; this
module follows the paper's definitions of the two attacks (evading: the patterned adversary is no
longer matched to its own images; impersonation: it is matched as the target person) and issue 17,
and copies no code. The ``beta`` term and the exact loss weighting are this module's choices.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advbench.api import AdvbenchError, Attack, FeatureBank, Targets, Victim
from advbench_patch.geometry import LOCATIONS, check_area, masks, rects
from advbench_patch.transforms import draw, render

GOALS = ("auto", "untargeted", "targeted")


def distances(a: Tensor, b: Tensor, distance: str) -> Tensor:
    """Differentiable ``[len(a), len(b)]`` distances: 1 - cos (cosine) or squared L2 (euclidean)."""
    if distance == "cosine":
        return 1.0 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    return (a * a).sum(1, keepdim=True) - 2.0 * a @ b.T + (b * b).sum(1)[None, :]


def total_variation(patch: Tensor) -> Tensor:
    """Mean absolute difference of neighbouring pixels, per image ``[N]`` (smoothness term)."""
    dh = (patch[:, :, 1:, :] - patch[:, :, :-1, :]).abs().flatten(1).mean(1)
    dw = (patch[:, :, :, 1:] - patch[:, :, :, :-1]).abs().flatten(1).mean(1)
    return dh + dw


class AdvPattern(Attack):
    """A torso patch of ``area`` optimised by Adam under EOT for evasion or impersonation (see module)."""

    name = "advpattern"

    def __init__(
        self,
        eps: float = 255.0,
        area: float = 0.1,
        steps: int = 50,
        lr: float = 0.05,
        location: str = "fixed",
        aspect: float = 1.0,
        eot_draws: int = 4,
        scale: float = 0.1,
        shift: float = 0.1,
        brightness: float = 0.1,
        beta: float = 0.0,
        tv: float = 0.0,
        cross_camera: bool = True,
        goal: str = "auto",
    ) -> None:
        super().__init__(
            eps=eps,
            area=area,
            steps=steps,
            lr=lr,
            location=location,
            aspect=aspect,
            eot_draws=eot_draws,
            scale=scale,
            shift=shift,
            brightness=brightness,
            beta=beta,
            tv=tv,
            cross_camera=cross_camera,
            goal=goal,
        )
        self.area = check_area(area)
        if int(steps) < 1 or int(eot_draws) < 1:
            raise AdvbenchError(f"{self.name} needs steps >= 1 and eot_draws >= 1")
        if float(lr) <= 0:
            raise AdvbenchError(f"{self.name} needs lr > 0, got {lr}")
        if location not in LOCATIONS:
            raise AdvbenchError(
                f"{self.name}: location must be one of {', '.join(LOCATIONS)}, got {location!r}"
            )
        if not 0 <= float(scale) < 1 or float(shift) < 0 or not 0 <= float(brightness) < 1:
            raise AdvbenchError(f"{self.name} needs 0 <= scale < 1, shift >= 0, 0 <= brightness < 1")
        if float(beta) < 0 or float(tv) < 0:
            raise AdvbenchError(f"{self.name} needs beta >= 0 and tv >= 0")
        if not (isinstance(aspect, (int, float)) and 0 < float(aspect) < float("inf")):
            raise AdvbenchError(
                f"{self.name}: aspect (patch width / height) must be a positive number, got {aspect!r}"
            )
        if goal not in GOALS:
            raise AdvbenchError(f"{self.name}: goal must be one of {', '.join(GOALS)}, got {goal!r}")
        self.steps, self.lr, self.location, self.aspect = int(steps), float(lr), location, float(aspect)
        self.eot_draws, self.scale, self.shift = int(eot_draws), float(scale), float(shift)
        self.brightness, self.beta, self.tv = float(brightness), float(beta), float(tv)
        self.cross_camera, self.goal = bool(cross_camera), goal

    # ------------------------------------------------------------------------------------ guides
    def _own(
        self, clean_feat: Tensor, pids: Tensor, camids: Tensor, gallery: FeatureBank | None
    ) -> tuple[Tensor, Tensor]:
        """(guides ``[B + G, D]``, weights ``[B, B + G]``): the clean features and gallery rows, and per
        query a uniform weight row over its own clean feature and its true matches (rows sum to 1)."""
        b = clean_feat.shape[0]
        feats, weights = [clean_feat], [torch.eye(b, device=clean_feat.device)]
        if gallery is not None and len(gallery.features):
            g = gallery.features.to(clean_feat.device).float()
            same = pids.to(g.device)[:, None] == gallery.pids.to(g.device)[None, :]
            if self.cross_camera:
                same &= camids.to(g.device)[:, None] != gallery.camids.to(g.device)[None, :]
            feats.append(g)
            weights.append(same.float())
        w = torch.cat(weights, dim=1)
        return torch.cat(feats, dim=0), w / w.sum(1, keepdim=True)

    def _target(
        self, targets: Targets, gallery: FeatureBank | None, batch: int, device: torch.device
    ) -> Tensor:
        """The mean candidate feature of each query ``[B, D]`` (its impersonation target)."""
        if gallery is None or len(gallery.features) == 0:
            raise AdvbenchError(f"{self.name} (targeted) needs the gallery features the targets index")
        if targets.goal != "targeted":
            raise AdvbenchError(
                f"{self.name} runs goal 'targeted' (impersonation), got targets for {targets.goal!r}"
            )
        rows = torch.as_tensor(targets.indices)
        n = len(gallery.features)
        if rows.ndim != 2 or rows.shape[0] != batch or rows.shape[1] < 1:
            raise AdvbenchError(
                f"{self.name} needs target indices [B={batch}, k>=1], got shape {tuple(rows.shape)}"
            )
        if rows.is_floating_point() or int(rows.min()) < 0 or int(rows.max()) >= n:
            raise AdvbenchError(
                f"{self.name}: target indices must be integer rows of the gallery (0..{n - 1})"
            )
        g = gallery.features.to(device).float()
        return g[rows.to(device).long()].mean(1)

    # ----------------------------------------------------------------------------------- perturb
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
        if self.goal == "targeted" and targets is None:
            raise AdvbenchError(
                f"{self.name} with goal='targeted' needs targets=Targets('targeted', indices [B, k])"
            )
        targeted = targets is not None and self.goal != "untargeted"
        b, size, device = images.shape[0], (int(images.shape[2]), int(images.shape[3])), images.device
        clean = images.detach().float()
        boxes = rects(b, self.area, size, aspect=self.aspect, location=self.location)
        mask = masks(boxes, size, device)
        distance = getattr(victim, "distance", "cosine")
        with torch.no_grad():
            clean_feat = victim.features(clean).float()
        guides, weights = self._own(clean_feat, pids, camids, gallery)
        target = self._target(targets, gallery, b, device) if targeted else None

        patch = torch.rand(b, 3, *size).to(device) * mask  # global generator on CPU: device-independent
        patch.requires_grad_(True)
        opt = torch.optim.Adam([patch], lr=self.lr)
        d_rows = self.eot_draws
        for _ in range(self.steps):
            ts = draw(
                boxes,
                size,
                d_rows,
                scale=self.scale,
                shift=self.shift,
                brightness=self.brightness,
                device=device,
            )
            x = render(clean, patch * mask, mask, ts).clamp(0.0, 1.0)
            feat = victim.features(x).float()
            own = (distances(feat, guides, distance) * weights.repeat(d_rows, 1)).sum(1)
            if target is None:
                loss = -own
            else:
                loss = _paired(feat, target.repeat(d_rows, 1), distance) - self.beta * own
            loss = loss.view(d_rows, b).mean(0)
            if self.tv:
                loss = loss + self.tv * total_variation(patch)
            (patch.grad,) = torch.autograd.grad(loss.sum(), patch)  # leaves the victim's .grad alone
            opt.step()
            with torch.no_grad():
                patch.clamp_(0.0, 1.0).mul_(mask)
        with torch.no_grad():
            adv = torch.where(mask.bool(), patch.detach().clamp(0.0, 1.0), clean)
        return adv.to(images.dtype)


def _paired(a: Tensor, b: Tensor, distance: str) -> Tensor:
    """Row-wise distances ``[N]`` between ``a[i]`` and ``b[i]``."""
    if distance == "cosine":
        return 1.0 - (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1)
    return ((a - b) ** 2).sum(1)


def build(eps: float = 255.0, **params: Any) -> AdvPattern:
    """``AdvPattern(eps, **params)``; unknown params are a one-line AdvbenchError."""
    try:
        return AdvPattern(eps=eps, **params)
    except TypeError as exc:
        raise AdvbenchError(f"advpattern: {exc}") from None
