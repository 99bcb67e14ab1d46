"""The typed records a run produces, as the store keeps them and the leaderboard reads them.

A *craft* is one (dataset, attack with params and eps, threat model, source victim, and for an
adaptive attack the defence it was crafted through): the adversarial queries and what they cost and
look like; a targeted or demote craft keeps its chosen candidates (``targets``: gallery rows per
query), and each of its evaluations the candidates' 0-based ranks before and after. An
*evaluation* is one craft scored on one target victim (the source itself for the white-box row, any
other victim for transfer), possibly through a defence. A *detection* says how easily a craft's
queries are told from clean ones. A *fit* is a learning attack trained on a source victim. Records
are JSON objects with a ``kind``; a failed unit of work is a :class:`FailedRecord`, which a rerun
tries again. Fields added after a record kind first shipped have defaults, so older stores load.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["craft", "eval", "fit", "detect", "failed"]
Threat = Literal["none", "transfer-to-defended", "adaptive"]


@dataclass(frozen=True)
class Scores:
    """Retrieval scores in percent (mAP, rank-1/5/10, mINP) of one query set."""

    mAP: float
    rank1: float
    rank5: float
    rank10: float
    mINP: float


@dataclass(frozen=True)
class CraftRecord:
    key: str
    dataset: str
    fit_dataset: str
    attack: str
    attack_params: dict[str, Any]
    eps: float
    source_victim: str
    source_checkpoint: str
    source_weights_id: str
    perceptual: dict[str, Any]
    sec_per_image: float
    fit_seconds: float
    n_query: int
    input_size: tuple[int, int]
    seed: int
    quantized: bool
    batch_size: int
    adv_file: str
    provenance: dict[str, Any] = field(default_factory=dict)
    defence: str = "none"
    defence_params: dict[str, Any] = field(default_factory=dict)
    source_info: dict[str, str] = field(default_factory=dict)
    side: str = "query"
    goal: str = "untargeted"
    budget: str = "linf"
    targets: list[list[int]] | None = None
    patch_area: float | None = None
    attacked: list[int] | None = None
    kind: Kind = "craft"


@dataclass(frozen=True)
class EvalRecord:
    key: str
    craft_key: str
    dataset: str
    target_victim: str
    target_weights_id: str
    protocol: str
    n_gallery: int
    clean: Scores
    adv: Scores
    provenance: dict[str, Any] = field(default_factory=dict)
    defence: str = "none"
    defence_params: dict[str, Any] = field(default_factory=dict)
    threat: Threat = "none"
    clean_ap: list[float | None] | None = None
    adv_ap: list[float | None] | None = None
    frechet_distance: float | None = None
    examples: dict[str, list[Any]] | None = None
    target_info: dict[str, str] = field(default_factory=dict)
    clean_target_ranks: list[list[int]] | None = None
    adv_target_ranks: list[list[int]] | None = None
    kind: Kind = "eval"


@dataclass(frozen=True)
class DetectRecord:
    """How detectable a craft's queries are: spectral distance and high-frequency share of the
    perturbation, and the AUROC of a spectral detector trained on attacked train images."""

    key: str
    craft_key: str
    spectral_distance: float
    hf_share: float
    detector_auroc: float
    n_train: int
    kind: Kind = "detect"


@dataclass(frozen=True)
class FitRecord:
    key: str
    attack: str
    source_victim: str
    fit_dataset: str
    fit_seconds: float
    kind: Kind = "fit"


@dataclass(frozen=True)
class FailedRecord:
    key: str
    label: str
    error: str
    failed: Literal["craft", "eval", "fit", "train", "clean", "detect"]
    kind: Kind = "failed"


Record = CraftRecord | EvalRecord | FitRecord | DetectRecord | FailedRecord
_TYPES: dict[str, type] = {
    "craft": CraftRecord,
    "eval": EvalRecord,
    "fit": FitRecord,
    "detect": DetectRecord,
    "failed": FailedRecord,
}


def to_json(record: Record) -> dict[str, Any]:
    return dataclasses.asdict(record)


def from_json(data: Any) -> Record | None:
    """The record a JSON object holds, or None when it is not one this version knows."""
    if not isinstance(data, dict) or data.get("kind") not in _TYPES:
        return None
    cls = _TYPES[data["kind"]]
    names = {f.name for f in dataclasses.fields(cls)}
    if not names >= set(data) or any(
        f.name not in data
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ):
        return None
    values = dict(data)
    if cls is EvalRecord:
        values["clean"], values["adv"] = Scores(**values["clean"]), Scores(**values["adv"])
    if cls is CraftRecord:
        values["input_size"] = tuple(values["input_size"])
    try:
        return cls(**values)
    except TypeError:
        return None


@dataclass
class RunSummary:
    """What a run did: the records of its grid, and what was computed, skipped or failed."""

    crafts: list[CraftRecord] = field(default_factory=list)
    evals: list[EvalRecord] = field(default_factory=list)
    detects: list[DetectRecord] = field(default_factory=list)
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def records(self) -> list[Record]:
        return [*self.crafts, *self.evals, *self.detects]
