"""The types that cross the plugin boundary: samples, datasets, victims, attacks and their specs.

A plugin package imports from here and from :mod:`advbench.hookspecs` only. Everything is small and
typed so that a plugin author can read the whole contract in one sitting.

Conventions shared by every plugin:

* Images are ``float32`` tensors ``[N, 3, H, W]`` in ``[0, 1]`` at the victim's ``input_size``.
  Normalisation (ImageNet mean/std or whatever a model wants) happens *inside* the victim, so
  attacks live in pixel space and an L∞ budget means the same thing for every victim.
* ``eps`` is given in 1/255 pixel units (``eps=16`` means ‖δ‖∞ ≤ 16/255).
* Person ids (``pid``) and camera ids (``camid``, 0-based) are integers; train pids are relabelled
  to ``0..num_train_pids-1``, query/gallery pids are the raw ids of the release.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from advbench.errors import AdvbenchError  # noqa: F401  (re-exported: plugins import it from here)

if TYPE_CHECKING:
    from advbench.data.disk import DiskImages

Distance = Literal["cosine", "euclidean"]
Side = Literal["query", "gallery"]
Goal = Literal["untargeted", "targeted", "demote"]
Budget = Literal["linf", "patch"]


# ----------------------------------------------------------------------------------------- data
@dataclass(frozen=True, order=True)
class Sample:
    """One image of a re-ID dataset: where it is, who it shows, which camera took it."""

    path: str
    pid: int
    camid: int


@dataclass
class ReidDataset:
    """The three splits of a re-ID dataset under one evaluation protocol.

    ``fingerprint`` identifies the exact content (file list, sizes, mtimes, protocol): caches of
    decoded images, trained victims and fitted attacks are keyed by it.
    """

    name: str
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    root: Path
    fingerprint: str
    num_train_pids: int = -1
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_train_pids < 0:
            self.num_train_pids = len({s.pid for s in self.train})

    def counts(self) -> dict[str, int]:
        """Identities and images per split, as the dataset papers report them."""
        out: dict[str, int] = {}
        for split in ("train", "query", "gallery"):
            samples: list[Sample] = getattr(self, split)
            out[f"{split}_ids"] = len({s.pid for s in samples})
            out[f"{split}_images"] = len(samples)
        return out


@dataclass(frozen=True)
class ImageSplit:
    """A decoded split: images ``[N, 3, H, W]`` with their labels.

    ``images`` is a Tensor (uint8, a quarter of the memory, or float in [0, 1]) or, for the
    splits the runner loads, a :class:`~advbench.data.disk.DiskImages` read from the decode cache
    one batch at a time, so that memory is bounded by the batch rather than the dataset. Both take
    ``.shape``, ``len`` and indexing by a slice or an index tensor; read pixels through
    :meth:`batch`, which returns float [0, 1] on ``device`` either way.
    """

    images: Tensor | DiskImages
    pids: Tensor
    camids: Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, index: slice | Tensor, device: torch.device | str = "cpu") -> Tensor:
        """Images ``index`` (a slice or a 1-D index tensor; repeats allowed) as float [0, 1]."""
        images = self.images[index].to(device)
        return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


@dataclass(frozen=True)
class FeatureBank:
    """Clean features of a split under one victim (e.g. the gallery the attacker may index)."""

    features: Tensor
    pids: Tensor
    camids: Tensor


# -------------------------------------------------------------------------------------- victims
class Victim(nn.Module, abc.ABC):
    """A re-ID model under attack.

    Subclasses set ``input_size`` (H, W), ``distance`` and ``feature_dim`` and implement
    :meth:`features`, which must be differentiable with respect to the pixels. Models with an
    identity classifier (needed by training and by mis-classification losses) implement
    :meth:`logits`; ``num_classes`` is 0 otherwise. ``forward`` is :meth:`features`. A victim
    built from a foreign checkpoint may set ``info``, a few strings on where its weights came from
    (format, epoch, the classifier it kept or left out); records keep them.
    """

    input_size: tuple[int, int] = (256, 128)
    distance: Distance = "cosine"
    feature_dim: int = 0
    num_classes: int = 0

    @abc.abstractmethod
    def features(self, images: Tensor) -> Tensor:
        """Test-time embedding ``[N, D]`` of images in [0, 1] (normalised inside)."""

    def logits(self, images: Tensor) -> Tensor:
        """Identity logits ``[N, num_classes]``; only for victims with an ID head."""
        raise NotImplementedError(f"{type(self).__name__} has no identity classifier")

    def features_and_logits(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(test feature, identity logits) of the same images; override to share one backbone pass.

        Attacks that combine a ranking and a classification loss (Mis-Ranking) call this once per step.
        """
        return self.features(images), self.logits(images)

    def train_outputs(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """(embedding for the metric loss, identity logits) in training mode."""
        raise NotImplementedError(f"{type(self).__name__} cannot be trained by advbench")

    def forward(self, images: Tensor) -> Tensor:
        return self.features(images)


@dataclass(frozen=True)
class TrainRecipe:
    """How ``advbench train`` fits a victim: steps, not seconds, so results do not depend on speed."""

    steps: int = 400
    batch_p: int = 16
    batch_k: int = 4
    lr: float = 1e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 20
    label_smoothing: float = 0.1
    triplet_margin: float = 0.3
    pad_crop: int = 8
    flip: bool = True


@dataclass(frozen=True)
class VictimSpec:
    """A registered re-ID model family.

    ``build(num_classes=..., input_size=(H, W), **params)`` returns an untrained :class:`Victim`;
    ``params`` default to ``defaults``. A victim is built *for* a dataset: ``input_size`` is the
    dataset's crop size and ``num_classes`` its number of train ids. ``load(path, input_size=(H, W),
    num_classes=N, **params)`` (optional) builds a victim from a foreign checkpoint file (an official
    release, a torchreid or fast-reid training) and must fail with :class:`AdvbenchError` naming the
    missing and unexpected keys; ``num_classes`` is the dataset's train ids, so a loader can tell
    whether the checkpoint's own classifier fits the dataset (and otherwise leave ``logits`` out).
    A family's loader also gets ``variant``.
    ``variant`` = True means the name is a family: ``name:variant`` (e.g. ``timm:convnext_nano``)
    reaches ``build(..., variant="convnext_nano")``; ``variants`` lists the variants a family knows
    (shown by ``advbench plugins``), when the list is short enough to show.
    """

    name: str
    description: str
    build: Callable[..., Victim]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    load: Callable[..., Victim] | None = None
    default: bool = False
    variant: bool = False
    version: str = "0"
    variants: tuple[str, ...] = ()


# -------------------------------------------------------------------------------------- attacks
@dataclass(frozen=True, order=True)
class ThreatModel:
    """What an attack perturbs, what it wants and how it is bounded.

    ``side``: ``query`` (the probe is perturbed) or ``gallery`` (chosen gallery images are, the
    queries stay clean). ``goal``: ``untargeted`` (break retrieval), ``targeted`` (push chosen
    candidates up the ranking) or ``demote`` (push them down). ``budget``: ``linf`` (‖δ‖∞ ≤ eps/255)
    or ``patch`` (unbounded inside a patch covering a fraction of the image).
    """

    side: Side = "query"
    goal: Goal = "untargeted"
    budget: Budget = "linf"

    @property
    def label(self) -> str:
        return f"{self.side}/{self.goal}/{self.budget}"


UNTARGETED_QUERY = ThreatModel()
"""Every attack's threat model unless its spec says otherwise: untargeted L∞ on the queries."""


@dataclass(frozen=True)
class Targets:
    """The chosen candidates of a targeted or demote attack, one row per image of the batch.

    ``indices[i]`` are rows of the gallery :class:`FeatureBank` the attack was given: candidates
    that query ``i`` should rank high (``goal="targeted"``) or low (``goal="demote"``). They are
    drawn by the runner with a seeded rule and stored with the craft, so every victim is scored on
    the same targets.
    """

    goal: Goal
    indices: Tensor


class Attack(abc.ABC):
    """An adversarial attack on re-ID queries under an L∞ budget of ``eps``/255.

    ``perturb`` returns adversarial images in [0, 1]; the runner clips and quantises them to 8 bits
    afterwards, and checks the budget. ``gallery`` holds the source victim's clean gallery features
    (the retrieval index, known to a white-box attacker); attacks that do not need it ignore it.
    Attacks that learn (generators, universal perturbations) override :meth:`fit`. The runner calls
    it as a planned step, once per (attack, params, eps, source victim, fit dataset) and before any
    cell, seeded from the fit's own key; each cell (possibly in another process) builds the attack
    again and calls :meth:`fit` with the same ``cache_dir`` and ``key``, where it must reload what
    the planned step saved instead of training again.
    """

    name: str = "attack"

    def __init__(self, eps: float = 16.0, **params: Any) -> None:
        self.eps = float(eps)
        self.params = dict(params)

    @property
    def needs_fit(self) -> bool:
        return type(self).fit is not Attack.fit

    def fit(  # noqa: B027 - an optional step, not an abstract one
        self,
        victim: Victim,
        train: ImageSplit,
        *,
        cache_dir: Path,
        key: str,
        device: torch.device,
        progress: bool = True,
    ) -> None:
        """Learn whatever the attack learns from a training split (never the test queries).

        Save the result under ``cache_dir`` named by ``key`` (which hashes everything it depends on)
        and, when that entry exists, load it instead of training (see the class docstring);
        :mod:`advbench.io` has atomic writers for it.
        """

    @abc.abstractmethod
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
        """Adversarial versions of ``images`` (float [0, 1], on the victim's device).

        ``targets`` is given only for a targeted or demote craft (never to an attack whose spec does
        not list such a threat), so an untargeted attack may leave it out of its signature. For a
        **gallery-side** craft, ``images`` are the chosen gallery images, ``targets.indices`` rows
        of the query bank passed as ``queries=FeatureBank`` (the clean query features), and
        ``gallery`` the clean gallery features the images compete with.
        """


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: ``build(eps=..., **params) -> Attack``, params defaulting to ``defaults``.

    ``default=True`` puts it in ``--attacks default`` (opt-in, False unless set, as for every spec);
    ``variant=True`` makes the name a family (``torchattacks:APGD`` reaches
    ``build(..., variant="APGD")``), left out of ``--attacks all``. ``threats`` lists the threat
    models it can run (the plan pairs it only with those); an attack that lists a targeted or demote
    goal gets ``targets=`` in :meth:`Attack.perturb` for those crafts.
    """

    name: str
    description: str
    build: Callable[..., Attack]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    default: bool = False
    variant: bool = False
    threat_model: str = "white-box, L∞"
    version: str = "0"
    threats: tuple[ThreatModel, ...] = (UNTARGETED_QUERY,)


# ------------------------------------------------------------------------------------- defences
class InputDefence(abc.ABC):
    """Transforms query images ([N,3,H,W] float [0,1] -> same shape, [0,1]) before the victim sees them.

    ``differentiable`` = False means an adaptive attacker goes through it with BPDA (identity
    backward, Athalye et al., ICML 2018); ``randomized`` = True means it is evaluated as the mean
    over ``draws`` seeded draws and adaptive attacks use EOT over as many draws. A randomized
    defence draws its randomness from ``generator`` only, so one generator state gives one output.
    """

    differentiable: bool = True
    randomized: bool = False
    draws: int = 1

    @abc.abstractmethod
    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The defended images, same shape, dtype and device as ``images``, in [0, 1]."""


class RankingDefence(abc.ABC):
    """Transforms the query-gallery distances after the victim (re-ranking)."""

    @abc.abstractmethod
    def rerank(self, q_g: Tensor, q_q: Tensor, g_g: Tensor) -> Tensor:
        """New query-gallery distances ``[Q, G]`` from query-gallery, query-query, gallery-gallery ones."""


Defence = InputDefence | RankingDefence


@dataclass(frozen=True)
class DefenceSpec:
    """A registered defence: ``build(**params) -> Defence``, params defaulting to ``defaults``.

    ``default=True`` puts it in ``--defences default``; ``none`` is the reserved selector for
    "no defence" (``--defences none,jpeg``).
    """

    name: str
    description: str
    build: Callable[..., Defence]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    default: bool = False
    version: str = "0"


# ------------------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    ``load(root, cache_dir, **params) -> ReidDataset``. ``root`` is the data root the user gave
    (``--data-root`` / ``ADVBENCH_DATA``), or None; ``embedded`` datasets need none and generate
    themselves into ``cache_dir``. ``layout`` is a few lines showing the expected folders, printed
    with errors and by ``advbench datasets``.
    """

    name: str
    description: str
    load: Callable[..., ReidDataset]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    layout: str = ""
    embedded: bool = False
    default: bool = False
    input_size: tuple[int, int] = (256, 128)
    version: str = "0"


Spec = VictimSpec | AttackSpec | DatasetSpec | DefenceSpec
