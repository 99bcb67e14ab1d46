"""The plan of a run as data, before anything runs: fits, crafts and evaluations, each with its key.

``build_plan`` turns a :class:`~advbench.config.RunConfig`, the registry's attacks and the
resolved victim refs into tasks; nothing here touches torch, images or models. Keys hash exactly
what a result depends on:

* a **fit** (a learning attack trained on a source victim): the attack, its version, params and
  eps, the source's weights, the fit dataset's fingerprint and the run seed;
* a **craft** (adversarial queries): the dataset, the attack, its version, params and eps, the
  source's weights, the fit it uses, the seed, quantisation and batch size, never the targets;
* an **evaluation**: the craft and the target's weights, with the evaluation protocol;
* a **detection**: the craft and the number of attacked train images its detector learns from.

With ``--side`` / ``--goal``, each attack is paired with the threat models its spec lists and the run
selects (default: untargeted query attacks only); a targeted or demote craft's key also holds the
threat model and the number of candidates per query, so the keys of a default run are unchanged.

With ``--defences``, each craft is also evaluated through each defence (threat
``transfer-to-defended``) and, for an input defence, crafted again through it (threat ``adaptive``;
learning attacks are fitted through it too). The defence enters a key only when there is one, so
the keys of an undefended run are those of a run before defences existed.

Every random draw of a fit or a craft is seeded from its own key, so adding a victim to a finished
grid evaluates the stored adversarial queries on it and recomputes nothing else.

The tasks themselves are :mod:`advbench.tasks`, their keys :mod:`advbench.task_keys`; this module
resolves the run's choices and expands its grid into tasks, and re-exports their names.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from advbench.api import UNTARGETED_QUERY, ThreatModel
from advbench.config import RunConfig
from advbench.registry import Registry
from advbench.task_keys import (
    CRAFT_VERSION,
    DETECT_VERSION,
    EVAL_VERSION,
    FIT_VERSION,
    craft_task,
    detect_task,
    eval_task,
    fit_task,
)
from advbench.tasks import (
    AttackChoice,
    Cell,
    CraftTask,
    DefenceChoice,
    DetectTask,
    EvalTask,
    FitTask,
    Plan,
)
from advbench.victims import VictimRef

__all__ = [
    "CRAFT_VERSION",
    "DETECT_VERSION",
    "EVAL_VERSION",
    "FIT_VERSION",
    "NO_DEFENCE",
    "PATCH_EPS",
    "AttackChoice",
    "Cell",
    "CraftTask",
    "DefenceChoice",
    "DetectTask",
    "EvalTask",
    "FitTask",
    "Plan",
    "attack_choices",
    "budget_groups",
    "build_plan",
    "defence_choices",
    "fit_task",
    "threats_of",
]

NO_DEFENCE = "none"
PATCH_EPS = 255.0
"""The L∞ budget of a patch craft: unbounded inside the patch (the patch area is its budget)."""


def attack_choices(config: RunConfig, registry: Registry) -> list[AttackChoice]:
    """The run's attacks with their parameters (defaults, then ``--attack-param``)."""
    out = []
    for name in registry.select("attack", config.attacks):
        entry, variant = registry.get("attack", name)
        params = {**entry.spec.defaults, **config.attack_params.get(name, {})}
        out.append(
            AttackChoice(
                name=name,
                variant=variant,
                version=entry.spec.version,
                params=tuple(sorted(params.items())),
                learns=_learns(entry.spec.build, variant, params),
                threats=tuple(getattr(entry.spec, "threats", (UNTARGETED_QUERY,))),
            )
        )
    return out


def defence_choices(config: RunConfig, registry: Registry) -> list[DefenceChoice | None]:
    """The run's defences with their parameters; None stands for ``none`` (no defence)."""
    from advbench.api import RankingDefence

    out: list[DefenceChoice | None] = []
    for name in registry.select("defence", config.defences):
        if name == NO_DEFENCE:
            out.append(None)
            continue
        entry, _ = registry.get("defence", name)
        params = {**entry.spec.defaults, **config.defence_params.get(name, {})}
        ranking = isinstance(entry.spec.build(**params), RankingDefence)
        out.append(DefenceChoice(name, entry.spec.version, tuple(sorted(params.items())), ranking))
    return out


def _learns(build: Any, variant: str | None, params: dict[str, Any]) -> bool:
    """Whether the attack fits on a train split; one that cannot be built counts as learning (its
    fit then fails with the real error)."""
    try:
        attack = build(**params, **({"variant": variant} if variant is not None else {}))
    except Exception:
        return True
    return bool(attack.needs_fit)


def build_plan(
    config: RunConfig,
    attacks: Sequence[AttackChoice],
    victims: Mapping[str, Sequence[VictimRef]],
    fit_victims: Mapping[str, VictimRef] | None = None,
    defences: Sequence[DefenceChoice | None] = (None,),
) -> Plan:
    """Fits and cells for every (dataset, attack, eps, source victim) of the run.

    ``victims`` maps each dataset to the refs of its victims (sources and targets alike);
    ``fit_victims`` maps a victim name to its ref on the ``--fit-on`` dataset; ``defences`` are
    the run's defences (None: undefended evaluation).
    """
    plan = Plan()
    fits: dict[str, FitTask] = {}
    adaptive = [d for d in defences if d is not None and not d.ranking]
    for dataset, refs in victims.items():
        for attack in attacks:
            for budget, threats in budget_groups(attack, config):
                for source in refs:
                    fit_source = source
                    if attack.learns and config.fit_on:
                        fit_source = (fit_victims or {}).get(source.name)
                        if fit_source is None:  # no weights on the --fit-on dataset (a failure of its own)
                            continue
                    for through, threat in itertools.product((None, *adaptive), threats):
                        if threat.side == "gallery" and through is not None:
                            continue  # input defences transform queries: nothing to adapt to
                        eps = budget if threat.budget == "linf" else PATCH_EPS
                        fit = None
                        if attack.learns:
                            task = fit_task(attack, eps, fit_source, config.seed, through)
                            fit = fits.setdefault(task.key, task)
                        area = budget if threat.budget == "patch" else None
                        craft = craft_task(
                            config, dataset, attack, float(eps), source, fit, through, threat, area
                        )
                        if threat.side == "gallery":  # clean queries: evaluated undefended only
                            evals = [eval_task(config, craft, target) for target in refs]
                        elif through is None:
                            evals = [
                                eval_task(
                                    config, craft, target, d, "none" if d is None else "transfer-to-defended"
                                )
                                for d in defences
                                for target in refs
                            ]
                        else:
                            evals = [eval_task(config, craft, target, through, "adaptive") for target in refs]
                        plan.cells.append(Cell(craft, tuple(evals), detect=detect_task(config, craft)))
    plan.fits = list(fits.values())
    return plan


def budget_groups(attack: AttackChoice, config: RunConfig) -> list[tuple[float, list[ThreatModel]]]:
    """(budget, threats) pairs of ``attack`` in this run: each eps with its L∞ threats, then each
    ``--patch-area`` with its patch threats (a patch craft is unbounded in L∞ inside its patch)."""
    threats = threats_of(attack, config)
    linf = [t for t in threats if t.budget == "linf"]
    patch = [t for t in threats if t.budget == "patch"]
    groups = [(float(eps), linf) for eps in config.eps] if linf else []
    return groups + ([(float(area), patch) for area in config.patch_areas] if patch else [])


def threats_of(attack: AttackChoice, config: RunConfig) -> list[ThreatModel]:
    """The threat models ``attack`` runs under in this run: those its spec lists that the run's
    ``--side``, ``--goal`` and ``--budget`` select (a gallery-side threat needs a goal with chosen
    targets)."""
    return [
        t
        for t in attack.threats
        if t.side in config.sides
        and t.goal in config.goals
        and t.budget in config.budgets
        and not (t.side == "gallery" and t.goal == "untargeted")
    ]
