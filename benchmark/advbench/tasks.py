"""The tasks of a plan as data: the run's attack and defence choices, its fits, crafts,
evaluations and detections, and the cells a backend runs.

Plain dataclasses, built by :func:`advbench.plan.build_plan` (each with its key, see
:mod:`advbench.task_keys`) and read by the steps that run them; nothing here computes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from advbench.api import UNTARGETED_QUERY, ThreatModel
from advbench.victims import VictimRef


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
