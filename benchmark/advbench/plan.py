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
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from advbench.api import UNTARGETED_QUERY, ThreatModel
from advbench.config import RunConfig
from advbench.plugins import Registry
from advbench.utils import stable_hash
from advbench.victims import VictimRef

CRAFT_VERSION = "2"
EVAL_VERSION = "1"
FIT_VERSION = "2"
DETECT_VERSION = "1"
NO_DEFENCE = "none"
PATCH_EPS = 255.0
"""The L∞ budget of a patch craft: unbounded inside the patch (the patch area is its budget)."""


@dataclass(frozen=True)
class AttackChoice:
    """An attack of the run with its resolved parameters."""

    name: str
    variant: str | None
    version: str
    params: tuple[tuple[str, Any], ...]
    learns: bool
    threats: tuple[ThreatModel, ...] = (UNTARGETED_QUERY,)

    def build_kwargs(self, eps: float, area: float | None = None) -> dict[str, Any]:
        """``build``'s arguments; a patch-budget craft also passes its ``area``."""
        variant = {"variant": self.variant} if self.variant is not None else {}
        patch = {"area": area} if area is not None else {}
        return {"eps": eps, **dict(self.params), **variant, **patch}


@dataclass(frozen=True)
class DefenceChoice:
    """A defence of the run with its resolved parameters; ``ranking`` for one that re-ranks
    distances (nothing to craft through), else an input transform."""

    name: str
    version: str
    params: tuple[tuple[str, Any], ...]
    ranking: bool

    def key(self) -> tuple[Any, ...]:
        return ("defence", self.name, self.version, dict(self.params))


@dataclass(frozen=True)
class FitTask:
    """Train a learning attack on ``source``'s weights (through ``defence`` when adaptive) and its
    dataset's train split."""

    key: str
    attack: AttackChoice
    eps: float
    source: VictimRef
    seed: int
    defence: DefenceChoice | None = None

    @property
    def label(self) -> str:
        through = f" through {self.defence.name}" if self.defence else ""
        return f"fit {self.attack.name} eps={self.eps:g} on {self.source.label}{through}"


@dataclass(frozen=True)
class CraftTask:
    """Adversarial queries of ``dataset`` crafted on ``source`` (after ``fit``, for learning attacks)."""

    key: str
    dataset: str
    attack: AttackChoice
    eps: float
    source: VictimRef
    fit: FitTask | None
    seed: int
    run_seed: int
    quantize: bool
    batch_size: int
    defence: DefenceChoice | None = None
    threat_model: ThreatModel = UNTARGETED_QUERY
    n_targets: int = 0
    patch_area: float | None = None
    gallery_images: int = 0

    @property
    def targeted(self) -> bool:
        """Whether the craft has chosen candidates (goal ``targeted`` or ``demote``)."""
        return self.threat_model.goal != "untargeted"

    @property
    def label(self) -> str:
        through = f" through {self.defence.name}" if self.defence else ""
        threat = "" if self.threat_model == UNTARGETED_QUERY else f" [{self.threat_model.label}]"
        if self.patch_area is not None:
            threat += f" area={self.patch_area:g}"
        return f"{self.dataset} | {self.attack.name} eps={self.eps:g}{threat} | source {self.source.name}{through}"


@dataclass(frozen=True)
class EvalTask:
    """Score a craft's adversarial queries on ``target`` (white-box when it is the source)."""

    key: str
    craft_key: str
    target: VictimRef
    protocol: str
    seed: int
    defence: DefenceChoice | None = None
    threat: str = "none"


@dataclass(frozen=True)
class DetectTask:
    """Measure how detectable a craft's queries are (spectra, and a detector trained on ``n_train``
    attacked train images of the craft's dataset)."""

    key: str
    craft_key: str
    n_train: int
    seed: int


@dataclass(frozen=True)
class Cell:
    """The unit a backend runs: one craft (done now, or already stored), its evaluations and, when
    not yet stored, its detection."""

    craft: CraftTask
    evals: tuple[EvalTask, ...]
    crafted: bool = False
    detect: DetectTask | None = None


@dataclass
class Plan:
    """Every task of a run; :meth:`victims` lists the weights they need."""

    fits: list[FitTask] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)

    def victims(self) -> list[VictimRef]:
        refs: dict[VictimRef, None] = {}
        for fit in self.fits:
            refs[fit.source] = None
        for cell in self.cells:
            refs[cell.craft.source] = None
            refs.update(dict.fromkeys(e.target for e in cell.evals))
        return list(refs)


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


def _seed(key: str) -> int:
    return int(key[:8], 16)


def fit_task(
    attack: AttackChoice, eps: float, source: VictimRef, run_seed: int, defence: DefenceChoice | None = None
) -> FitTask:
    key = stable_hash(
        "fit",
        FIT_VERSION,
        attack.name,
        attack.variant,
        attack.version,
        dict(attack.params),
        eps,
        source.name,
        source.weights_id,
        source.dataset,
        source.dataset_fingerprint,
        run_seed,
        *([defence.key()] if defence else []),
    )
    return FitTask(key=key, attack=attack, eps=eps, source=source, seed=_seed(key), defence=defence)


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
                        craft = _craft(
                            config, dataset, attack, float(eps), source, fit, through, threat, area
                        )
                        if threat.side == "gallery":  # clean queries: evaluated undefended only
                            evals = [_eval(config, craft, target) for target in refs]
                        elif through is None:
                            evals = [
                                _eval(
                                    config, craft, target, d, "none" if d is None else "transfer-to-defended"
                                )
                                for d in defences
                                for target in refs
                            ]
                        else:
                            evals = [_eval(config, craft, target, through, "adaptive") for target in refs]
                        plan.cells.append(Cell(craft, tuple(evals), detect=_detect(config, craft)))
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


def _detect(config: RunConfig, craft: CraftTask) -> DetectTask | None:
    if config.detect_images <= 0 or craft.targeted:  # a targeted craft's detector needs train targets
        return None
    key = stable_hash("detect", DETECT_VERSION, craft.key, config.detect_images, length=24)
    return DetectTask(key=key, craft_key=craft.key, n_train=config.detect_images, seed=_seed(key))


def _craft(
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
        attack.name,
        attack.variant,
        attack.version,
        dict(attack.params),
        eps,
        source.name,
        source.weights_id,
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


def _eval(
    config: RunConfig,
    craft: CraftTask,
    target: VictimRef,
    defence: DefenceChoice | None = None,
    threat: str = "none",
) -> EvalTask:
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
