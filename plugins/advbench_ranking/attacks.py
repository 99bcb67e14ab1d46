"""The attacks of this package: ranking attacks (Zhou et al.) and metric attacks (Bouniot et al., Bai et al.).

* :class:`RankPGD` (``rank-pgd``): the query attack QA+ / QA- of Zhou et al., ECCV 2020, with its
  semantics-preserving term (SP-QA), as PGD on :func:`~advbench_ranking.losses.query_attack_loss`.
* :class:`CandidateAttack`: the candidate attack CA+ / CA- of the same paper (a gallery image
  perturbed to rise or sink for a set of queries); no spec yet, the runner has no gallery side.
* :class:`FurthestNegativeAttack` (``fna``): Bouniot et al., CVPRW 2020.
* :class:`MetricFGSM` (``metric-fgsm``, ``metric-ifgsm``): Bai et al., TPAMI (arXiv 1901.10650).

Bouniot et al.'s Self Metric Attack is *not* here: it is ``feature-pgd`` (see the package docstring).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advbench.api import AdvbenchError, Attack, FeatureBank, Targets, Victim
from advbench_ranking.losses import (
    candidate_attack_loss,
    furthest_negative_loss,
    guide_sets,
    identity_prototypes,
    metric_loss,
    pairwise_distances,
    query_attack_loss,
)
from advbench_ranking.pgd import linf_ascent, schedule

GOALS = ("targeted", "demote")


def _features(victim: Victim, images: Tensor) -> Tensor:
    return victim.features(images).float()


def _gallery(name: str, gallery: FeatureBank | None, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(features float32, pids, camids) of the gallery on ``device``, or a one-line error."""
    if gallery is None or len(gallery.features) == 0:
        raise AdvbenchError(f"{name} needs the source victim's gallery features (gallery=FeatureBank)")
    return (
        gallery.features.to(device).float(),
        gallery.pids.to(device),
        gallery.camids.to(device),
    )


def _target_rows(
    name: str, targets: Targets | None, batch: int, n_gallery: int, device: torch.device
) -> Tensor:
    """The ``[B, k]`` candidate rows of ``targets``, checked, or a one-line error."""
    if targets is None:
        raise AdvbenchError(
            f"{name} is a targeted/demote attack and needs targets=Targets(goal, indices [B, k])"
        )
    if targets.goal not in GOALS:
        raise AdvbenchError(f"{name} needs a targets goal of 'targeted' or 'demote', got {targets.goal!r}")
    rows = torch.as_tensor(targets.indices).to(device)
    if rows.ndim != 2 or rows.shape[0] != batch or rows.shape[1] < 1:
        raise AdvbenchError(f"{name} needs target indices [B={batch}, k>=1], got shape {tuple(rows.shape)}")
    if rows.is_floating_point() or int(rows.min()) < 0 or int(rows.max()) >= n_gallery:
        raise AdvbenchError(
            f"{name}: target indices must be integer rows of the gallery (0..{n_gallery - 1})"
        )
    return rows.long()


# ------------------------------------------------------------------------------- ranking attacks
class RankPGD(Attack):
    """Query attack QA+ / QA- (Zhou et al., "Adversarial Ranking Attack and Defense", ECCV 2020).

    Official code: https://github.com/cdluminate/advrank (``Code/models/common.py``: ``LossFactory``
    and ``RankPGD``), read, not copied. The query ``q`` is perturbed so that the chosen candidates C
    (``targets.indices``, rows of the gallery) rise to the top (``goal="targeted"``, QA+) or sink to
    the bottom (``goal="demote"``, QA-) of its ranking. Loss, *minimised* by PGD (signed descent, as
    advrank's ``RankPGD``)::

        L = L_QA(q', C; X) + xi * L_QA+(q', C_SP; X)
        L_QA+ = mean_{c, x} [d(q', c) - d(q', x)]_+      L_QA- = mean_{c, x} [d(q', x) - d(q', c)]_+

    with X the whole gallery (as advrank's code, which ranks against its whole database; a seeded
    sample of ``gallery_sample`` rows instead when > 0, for very large galleries) and ``d`` the
    victim's distance. The second term (``sp=True``) is the paper's semantics-preserving query
    attack (SP-QA), which advrank's pipelines run for their query attacks: ``C_SP`` are the
    ``sp_k`` gallery items nearest to the *clean* query (other than the chosen candidates), kept at
    the top with a QA+ term so that the rest of the ranking still looks like the query's own; ``xi``
    defaults to advrank's balance, 1 for QA+ and 100 for QA-. It is off by default (pure QA, the
    paper's L_QA): advrank draws QA- candidates from the query's top 1%, next to the items SP keeps,
    whereas advbench draws them uniformly from the other identities, and there the xi = 100 term
    all but blocks the demotion (tiny timm victim, k = 1: normalised rank 0.36 -> 0.50 with SP,
    -> 0.92 without). SP trades attack strength for stealth; leaderboards score the candidates.

    Schedule: advbench's PGD (``steps`` = 10, ``alpha = 2.5 * eps / steps``, uniform random start),
    the same as ``pgd`` and ``feature-pgd``, so its cost is PGD-10's plus a ``B x G`` distance
    matrix per step. advrank instead uses ``alpha = min(max(eps/10, 1/255), 0.01)`` and
    ``min(max(10, 2 eps/alpha), 30)`` steps without random start (20 steps at eps = 16/255): pass
    ``steps=20, alpha=1.6, random_start=False`` for that.
    """

    name = "rank-pgd"

    def __init__(
        self,
        eps: float = 16.0,
        steps: int = 10,
        alpha: float | None = None,
        random_start: bool = True,
        sp: bool = False,
        sp_k: int = 5,
        xi: float | None = None,
        gallery_sample: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            eps=eps,
            steps=steps,
            alpha=alpha,
            random_start=random_start,
            sp=sp,
            sp_k=sp_k,
            xi=xi,
            gallery_sample=gallery_sample,
            seed=seed,
        )
        self.steps, self.alpha = schedule(self.name, self.eps, steps, alpha)
        self.random_start = bool(random_start)
        if int(sp_k) < 0 or int(gallery_sample) < 0:
            raise AdvbenchError(f"{self.name} needs sp_k >= 0 and gallery_sample >= 0")
        if xi is not None and float(xi) < 0:
            raise AdvbenchError(f"{self.name} needs xi >= 0, got {xi}")
        self.sp, self.sp_k, self.xi = bool(sp), int(sp_k), xi
        self.gallery_sample, self.seed = int(gallery_sample), int(seed)

    def _bank(self, features: Tensor) -> Tensor:
        """X: the whole gallery, or a sample of ``gallery_sample`` rows drawn from ``seed``."""
        n = len(features)
        if not self.gallery_sample or self.gallery_sample >= n:
            return features
        rows = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))[: self.gallery_sample]
        return features[rows.to(features.device)]

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
        feats, _, _ = _gallery(self.name, gallery, images.device)
        rows = _target_rows(self.name, targets, len(images), len(feats), images.device)
        assert targets is not None
        goal, distance = targets.goal, victim.distance
        candidates = feats[rows]  # [B, k, D]
        bank = self._bank(feats)
        sp_k = min(self.sp_k, len(feats) - rows.shape[1]) if self.sp else 0
        keep = None
        if sp_k > 0:
            with torch.no_grad():
                d = pairwise_distances(_features(victim, images), feats, distance)
                d.scatter_(1, rows, float("inf"))  # the chosen candidates are not kept
                keep = feats[d.topk(sp_k, dim=1, largest=False).indices]  # [B, sp_k, D]
        xi = float(self.xi) if self.xi is not None else (1.0 if goal == "targeted" else 100.0)

        def loss(adv: Tensor) -> Tensor:
            f = _features(victim, adv)
            out = query_attack_loss(f, candidates, bank, distance, goal)
            if keep is not None and xi > 0:
                out = out + xi * query_attack_loss(f, keep, bank, distance, "targeted")
            return -out  # the hinge is the violated inequalities: PGD descends it

        return linf_ascent(
            images,
            loss,
            eps=self.eps / 255.0,
            steps=self.steps,
            alpha=self.alpha,
            random_start=self.random_start,
        )


class CandidateAttack(Attack):
    """Candidate attack CA+ / CA- (Zhou et al., ECCV 2020): perturb gallery candidates, not queries.

    Each candidate image ``c`` is perturbed so that it rises to the top (``goal="targeted"``, CA+)
    or sinks to the bottom (``goal="demote"``, CA-) of the rankings of its own set of queries Q,
    against the other gallery items X; PGD descending
    :func:`~advbench_ranking.losses.candidate_attack_loss`::

        L_CA+ = mean_{q in Q, x in X} [d(q, c') - d(q, x)]_+     L_CA- = mean [d(q, x) - d(q, c')]_+

    As a gallery-side attack (threats ``gallery/targeted`` and ``gallery/demote``), :meth:`perturb`
    gets the chosen gallery images, their queries as ``targets`` (rows of the ``queries`` bank,
    the source's clean query features) and the clean gallery features, and calls
    :meth:`perturb_candidates`; the runner then ranks the clean queries against the gallery with the
    perturbed candidates' features swapped in, on every victim (:mod:`advbench.gallery_side`).
    Same schedule and parameters as :class:`RankPGD`'s PGD.
    """

    name = "candidate-pgd"

    def __init__(
        self, eps: float = 16.0, steps: int = 10, alpha: float | None = None, random_start: bool = True
    ) -> None:
        super().__init__(eps=eps, steps=steps, random_start=random_start, alpha=alpha)
        self.steps, self.alpha = schedule(self.name, self.eps, steps, alpha)
        self.random_start = bool(random_start)

    def perturb(
        self,
        victim: Victim,
        images: Tensor,
        pids: Tensor,
        camids: Tensor,
        *,
        gallery: FeatureBank | None = None,
        targets: Targets | None = None,
        queries: FeatureBank | None = None,
    ) -> Tensor:
        """Gallery-side entry point: the chosen gallery ``images`` against their ``targets`` queries."""
        if targets is None or queries is None or gallery is None:
            raise AdvbenchError(
                f"{self.name} is a gallery-side attack: it needs targets, the query bank and the gallery"
            )
        bank = queries.features.to(images.device)
        return self.perturb_candidates(
            victim,
            images,
            bank[targets.indices.to(bank.device)],
            targets.goal,
            gallery_features=gallery.features,
        )

    def perturb_candidates(
        self,
        victim: Victim,
        candidate_images: Tensor,
        query_features: Tensor,
        goal: str,
        *,
        gallery_features: Tensor,
    ) -> Tensor:
        """Adversarial ``candidate_images`` ``[N, 3, H, W]`` in [0, 1], within ``eps``/255 in L∞.

        ``query_features`` ``[N, W, D]`` are, per candidate, the clean features of the W queries it
        attacks (all candidates of a batch share W; repeat a query to pad); ``gallery_features``
        ``[X, D]`` the clean gallery features it competes with; ``goal`` is ``targeted`` (CA+) or
        ``demote`` (CA-). Distances are ``victim.distance``.
        """
        if goal not in GOALS:
            raise AdvbenchError(f"{self.name} needs goal 'targeted' or 'demote', got {goal!r}")
        n = len(candidate_images)
        if query_features.ndim != 3 or query_features.shape[0] != n or query_features.shape[1] < 1:
            raise AdvbenchError(
                f"{self.name} needs query_features [N={n}, W>=1, D], got {tuple(query_features.shape)}"
            )
        if gallery_features.ndim != 2 or len(gallery_features) == 0:
            raise AdvbenchError(
                f"{self.name} needs gallery_features [X>=1, D], got {tuple(gallery_features.shape)}"
            )
        device = candidate_images.device
        queries = query_features.to(device).float()
        bank = gallery_features.to(device).float()

        def loss(adv: Tensor) -> Tensor:
            # descend the hinge of the violated inequalities
            return -candidate_attack_loss(_features(victim, adv), queries, bank, victim.distance, goal)

        return linf_ascent(
            candidate_images,
            loss,
            eps=self.eps / 255.0,
            steps=self.steps,
            alpha=self.alpha,
            random_start=self.random_start,
        )


# -------------------------------------------------------------------------------- metric attacks
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


def build(cls: type, eps: float, params: dict[str, Any]) -> Attack:
    """``cls(eps=eps, **params)``, with unknown parameters reported on one line."""
    try:
        return cls(eps=eps, **params)
    except TypeError as exc:
        raise AdvbenchError(f"{getattr(cls, 'name', cls.__name__)}: {exc}") from exc
