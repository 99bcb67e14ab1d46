"""The ranking attacks of Zhou et al., "Adversarial Ranking Attack and Defense", ECCV 2020 (official code
https://github.com/cdluminate/advrank): the query attack QA+ / QA- and the candidate attack CA+ / CA-."""

from __future__ import annotations

import torch
from torch import Tensor

from advbench.api import AdvbenchError, Attack, FeatureBank, Targets, Victim
from advbench_ranking.common import GOALS, _features, _gallery, _target_rows
from advbench_ranking.losses import (
    candidate_attack_loss,
    pairwise_distances,
    query_attack_loss,
)
from advbench_ranking.pgd import linf_ascent, schedule


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
