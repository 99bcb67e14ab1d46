"""Each task of a plan built with its key: a hash of exactly what its result depends on.

What enters each key is listed in :mod:`advbench.plan`; bumping a ``*_VERSION`` invalidates every
stored result of that stage. A task's seed is drawn from its key, so a key that does not change
means a result that does not change.
"""

from __future__ import annotations

from advbench.api import UNTARGETED_QUERY, ThreatModel
from advbench.config import RunConfig
from advbench.tasks import AttackChoice, CraftTask, DefenceChoice, DetectTask, EvalTask, FitTask
from advbench.utils import stable_hash
from advbench.victims import VictimRef

CRAFT_VERSION = "2"
EVAL_VERSION = "1"
FIT_VERSION = "2"
DETECT_VERSION = "1"


def _seed(key: str) -> int:
    """The seed of every random draw of a task, taken from its key."""
    return int(key[:8], 16)


def _attack_on(attack: AttackChoice, eps: float, source: VictimRef) -> tuple:
    """The parts of a fit's and a craft's key that name the attack, its budget and its source."""
    return (
        attack.name,
        attack.variant,
        attack.version,
        dict(attack.params),
        eps,
        source.name,
        source.weights_id,
    )


def fit_task(
    attack: AttackChoice, eps: float, source: VictimRef, run_seed: int, defence: DefenceChoice | None = None
) -> FitTask:
    """The fit of ``attack`` at ``eps`` on ``source`` (through ``defence`` when adaptive)."""
    key = stable_hash(
        "fit",
        FIT_VERSION,
        *_attack_on(attack, eps, source),
        source.dataset,
        source.dataset_fingerprint,
        run_seed,
        *([defence.key()] if defence else []),
    )
    return FitTask(key=key, attack=attack, eps=eps, source=source, seed=_seed(key), defence=defence)


def craft_task(
    config: RunConfig,
    dataset: str,
    attack: AttackChoice,
    eps: float,
    source: VictimRef,
    fit: FitTask | None,
    defence: DefenceChoice | None = None,
    threat: ThreatModel = UNTARGETED_QUERY,
    area: float | None = None,
) -> CraftTask:
    """The craft of ``dataset``'s queries by ``attack`` on ``source`` under ``threat``."""
    n_targets = config.targets_per_query if threat.goal != "untargeted" else 0
    extra = (
        [] if threat == UNTARGETED_QUERY else [("threat", threat.side, threat.goal, threat.budget, n_targets)]
    )
    if area is not None:
        extra.append(("patch", area))
    if threat.side == "gallery":
        extra.append(("gallery-images", config.gallery_images))
    key = stable_hash(
        "craft",
        CRAFT_VERSION,
        dataset,
        source.dataset_fingerprint,
        *_attack_on(attack, eps, source),
        fit.key if fit else None,
        config.seed,
        config.quantize,
        config.batch_size,
        *([defence.key()] if defence else []),
        *extra,
        length=24,
    )
    return CraftTask(
        key=key,
        dataset=dataset,
        attack=attack,
        eps=eps,
        source=source,
        fit=fit,
        seed=_seed(key),
        run_seed=config.seed,
        quantize=config.quantize,
        batch_size=config.batch_size,
        defence=defence,
        threat_model=threat,
        n_targets=n_targets,
        patch_area=area,
        gallery_images=config.gallery_images if threat.side == "gallery" else 0,
    )


def eval_task(
    config: RunConfig,
    craft: CraftTask,
    target: VictimRef,
    defence: DefenceChoice | None = None,
    threat: str = "none",
) -> EvalTask:
    """The evaluation of ``craft`` on ``target`` (through ``defence`` under ``threat``)."""
    key = stable_hash(
        "eval",
        EVAL_VERSION,
        craft.key,
        target.name,
        target.weights_id,
        config.protocol,
        *([defence.key(), threat] if defence else []),
        length=24,
    )
    return EvalTask(
        key=key,
        craft_key=craft.key,
        target=target,
        protocol=config.protocol,
        seed=config.seed,
        defence=defence,
        threat=threat,
    )


def detect_task(config: RunConfig, craft: CraftTask) -> DetectTask | None:
    """The detection of ``craft``'s queries, or None when the run detects nothing or it is targeted."""
    if config.detect_images <= 0 or craft.targeted:  # a targeted craft's detector needs train targets
        return None
    key = stable_hash("detect", DETECT_VERSION, craft.key, config.detect_images, length=24)
    return DetectTask(key=key, craft_key=craft.key, n_train=config.detect_images, seed=_seed(key))
