"""advbench built-in plugin: ranking and metric attacks of the re-ID / retrieval attack literature.

Attacks (every spec ``default=False``, so the default grid does not change):

* ``rank-pgd``: query attack QA+ (``targeted``) / QA- (``demote``) of Zhou et al., "Adversarial
  Ranking Attack and Defense", ECCV 2020 (code: https://github.com/cdluminate/advrank), with its
  semantics-preserving term; threats ``query/targeted/linf`` and ``query/demote/linf``.
* ``fna``: Furthest-Negative Attack of Bouniot et al., "Vulnerability of Person Re-Identification
  Models to Metric Adversarial Attacks", CVPR Workshops 2020 (code:
  https://github.com/CEA-LIST/adv-reid).
* ``metric-fgsm`` / ``metric-ifgsm``: adversarial metric attack of Bai et al., "Adversarial Metric
  Attack and Defense for Person Re-identification", TPAMI (arXiv 1901.10650; code:
  https://github.com/SongBaiHust/Adversarial_Metric_Attack).
* The candidate attack CA+ / CA- of Zhou et al. is :class:`advbench_ranking.attacks.CandidateAttack`,
  without a spec until the runner perturbs gallery images (its docstring says what it needs).

**Self Metric Attack = feature-pgd.** Bouniot et al.'s SMA (official code: ``perturb_queries_self``
with advertorch's ``LinfPGDAttack(mse, rand_init=True)``) takes the attacked image's clean feature
as its only, "artificial", pushing guide: from a random start in the ball it ascends
``||f(x') - f(x)||^2`` (features L2-normalised for cosine models). ``feature-pgd``
(advbench_torchattacks) ascends ``1 - cos(f(x'), f(x))`` from a random start. On L2-normalised
features ``||a - b||^2 = 2 (1 - cos(a, b))``, so the two losses differ by a factor 2, which a
sign-gradient step ignores: for cosine victims they are the same attack, and only the schedule
differs (SMA: 15 steps of 1/255, i.e. less than the ball's diameter at eps = 16; feature-pgd:
advbench's PGD-10, ``alpha = 2.5 eps / steps``). For euclidean victims SMA would use the squared L2
distance of the raw features, feature-pgd still uses the cosine one. The same loss is also Zhou et
al.'s untargeted "embedding shift" (advrank's ``RankLossEmbShift``). So no second implementation is
added here; ``feature-pgd`` is the benchmark's SMA.
"""

from __future__ import annotations

from typing import Any

from advbench import hookimpl
from advbench.api import Attack, AttackSpec, ThreatModel

__version__ = "0.1.0"

RANKING_THREATS = (ThreatModel("query", "targeted", "linf"), ThreatModel("query", "demote", "linf"))
CANDIDATE_THREATS = (ThreatModel("gallery", "targeted", "linf"), ThreatModel("gallery", "demote", "linf"))


def _rank_pgd(eps: float = 16.0, **params: Any) -> Attack:
    from advbench_ranking.attacks import RankPGD, build

    return build(RankPGD, eps, params)


def _candidate_pgd(eps: float = 16.0, **params: Any) -> Attack:
    from advbench_ranking.attacks import CandidateAttack, build

    return build(CandidateAttack, eps, params)


def _fna(eps: float = 16.0, **params: Any) -> Attack:
    from advbench_ranking.attacks import FurthestNegativeAttack, build

    return build(FurthestNegativeAttack, eps, params)


def _metric(name: str):
    def make(eps: float = 16.0, **params: Any) -> Attack:
        from advbench_ranking.attacks import MetricFGSM, build

        return build(MetricFGSM, eps, {**params, "name": name})

    return make


@hookimpl
def advbench_attacks() -> list[AttackSpec]:
    return [
        AttackSpec(
            name="rank-pgd",
            description="Query attack QA+/QA- (Zhou et al. ECCV 2020): PGD-10 on the triplet-style ranking loss of the chosen candidates; sp=True adds the semantics-preserving term",
            build=_rank_pgd,
            defaults={"steps": 10, "random_start": True, "sp": False, "sp_k": 5, "gallery_sample": 0},
            default=False,
            threat_model="white-box, L∞, targeted/demote candidates",
            version=__version__,
            threats=RANKING_THREATS,
        ),
        AttackSpec(
            name="candidate-pgd",
            description="Candidate attack CA+/CA- (Zhou et al. ECCV 2020): PGD-10 on chosen gallery images so they rise (targeted) or sink (demote) in their queries' rankings",
            build=_candidate_pgd,
            defaults={"steps": 10, "random_start": True},
            default=False,
            threat_model="white-box, L∞, gallery side",
            version=__version__,
            threats=CANDIDATE_THREATS,
        ),
        AttackSpec(
            name="fna",
            description="Furthest-Negative Attack (Bouniot et al. CVPRW 2020): PGD-10 pushing from own-id guides, pulling to the furthest id",
            build=_fna,
            defaults={"steps": 10, "random_start": True, "cross_camera": True},
            default=False,
            version=__version__,
        ),
        AttackSpec(
            name="metric-fgsm",
            description="Metric FGSM (Bai et al. TPAMI): one eps step maximising the distance to the query's gallery true matches",
            build=_metric("metric-fgsm"),
            defaults={"steps": 1, "cross_camera": True},
            default=False,
            version=__version__,
        ),
        AttackSpec(
            name="metric-ifgsm",
            description="Metric I-FGSM (Bai et al. TPAMI): min(eps+4, 1.25 eps) steps of 1/255 on the same metric loss; momentum=1 for MI-FGSM",
            build=_metric("metric-ifgsm"),
            defaults={
                "steps": "auto",
                "alpha": 1.0,
                "momentum": 0.0,
                "random_start": False,
                "cross_camera": True,
            },
            default=False,
            version=__version__,
        ),
    ]
