"""The attacks of this package: ranking attacks (Zhou et al.) and metric attacks (Bouniot et al., Bai et al.).

* :class:`RankPGD` (``rank-pgd``): the query attack QA+ / QA- of Zhou et al., ECCV 2020, with its
  semantics-preserving term (SP-QA), as PGD on :func:`~advbench_ranking.losses.query_attack_loss`.
* :class:`CandidateAttack`: the candidate attack CA+ / CA- of the same paper (a gallery image
  perturbed to rise or sink for a set of queries), the gallery-side ``candidate-pgd``.
* :class:`FurthestNegativeAttack` (``fna``): Bouniot et al., CVPRW 2020.
* :class:`MetricFGSM` (``metric-fgsm``, ``metric-ifgsm``): Bai et al., TPAMI (arXiv 1901.10650).

Bouniot et al.'s Self Metric Attack is *not* here: it is ``feature-pgd`` (see the package docstring).
The classes live in :mod:`advbench_ranking.rank` and :mod:`advbench_ranking.metric`; this module names them.
"""

from advbench_ranking.common import GOALS, build
from advbench_ranking.metric import FurthestNegativeAttack, MetricFGSM, kurakin_steps
from advbench_ranking.rank import CandidateAttack, RankPGD

__all__ = [
    "GOALS",
    "CandidateAttack",
    "FurthestNegativeAttack",
    "MetricFGSM",
    "RankPGD",
    "build",
    "kurakin_steps",
]
