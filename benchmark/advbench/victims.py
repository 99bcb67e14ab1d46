"""Victims as picklable references: which weights a (victim, dataset) uses, training them, loading them.

A :class:`VictimRef` names a victim's weights without holding them: the user's file, a cached
advbench checkpoint, or a checkpoint still to be trained. Planning, store keys and tasks sent to
other processes carry refs; :class:`VictimLoader` turns them into models where the work happens.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from advbench import checkpoints
from advbench.adversarial_training import AdversarialRecipe, split_name
from advbench.api import AdvbenchError, ImageSplit, ReidDataset, TrainRecipe, Victim
from advbench.config import RunConfig
from advbench.io import verified
from advbench.plugins import Registry
from advbench.utils import file_hash

Origin = Literal["user", "cache", "train"]


@dataclass(frozen=True)
class VictimRef:
    """The weights of victim ``name`` for ``dataset``: where they are (or will be) and their identity.

    ``weights_id`` is the content hash of a user file or the cache key of an advbench checkpoint;
    every key downstream (features, fits, crafts, evaluations) is derived from it. ``origin`` is
    ``train`` while the checkpoint does not exist yet.
    """

    name: str
    dataset: str
    checkpoint: str
    weights_id: str
    origin: Origin
    input_size: tuple[int, int]
    params: tuple[tuple[str, Any], ...] = ()
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    num_classes: int = 0
    dataset_fingerprint: str = ""
    seed: int = 0
    adversarial: AdversarialRecipe | None = None
    file_sha256: str = ""
    """The full SHA-256 of a user's file (``weights_id`` is its first 16 hex digits)."""

    @property
    def label(self) -> str:
        return f"{self.name} on {self.dataset}"


def _setup(
    name: str, config: RunConfig, registry: Registry
) -> tuple[Any, dict[str, Any], TrainRecipe, AdversarialRecipe | None]:
    """Spec entry, build params, train recipe and adversarial recipe of ``name`` (``resnet10t@at4``).

    A robust victim is built like its base victim: the base's ``--victim-param`` apply, then its own.
    """
    base, adversarial = split_name(name)
    entry, variant = registry.get("victim", base)
    params = {
        **entry.spec.defaults,
        **config.victim_params.get(base, {}),
        **config.victim_params.get(name, {}),
    }
    if variant is not None:
        params["variant"] = variant
    recipe = entry.spec.recipe
    if config.train_steps is not None:
        recipe = dataclasses.replace(recipe, steps=config.train_steps)
    return entry, params, recipe, adversarial


def resolve(
    name: str,
    data: ReidDataset,
    input_size: tuple[int, int],
    config: RunConfig,
    registry: Registry,
    embedded: bool,
    *,
    train_missing: bool | None = None,
    remove: bool = True,
) -> VictimRef:
    """The ref of ``name``'s weights for ``data``: user file, else cache, else to be trained.

    Raises :class:`AdvbenchError` saying what to do when there are no weights and training is not
    allowed (real datasets need ``--train-missing`` or ``advbench train``). A damaged cached
    checkpoint is reported and removed (``remove=False``, as in a dry run: reported and kept).
    """
    entry, params, recipe, adversarial = _setup(name, config, registry)
    common = dict(
        name=name,
        dataset=data.name,
        input_size=tuple(input_size),
        params=tuple(sorted(params.items())),
        recipe=recipe,
        num_classes=data.num_train_pids,
        dataset_fingerprint=data.fingerprint,
        seed=config.seed,
        adversarial=adversarial,
    )
    if name in config.victim_weights:
        path = Path(config.victim_weights[name])
        if not path.is_file():
            raise AdvbenchError(f"--victim-weights {name}={path}: no such file")
        sha = file_hash(path, length=64)  # read once: the key and the records' provenance share it
        return VictimRef(checkpoint=str(path), weights_id=sha[:16], origin="user", file_sha256=sha, **common)
    key = checkpoints.victim_key(
        split_name(name)[0],
        params,
        entry.spec.version,
        data.fingerprint,
        input_size,
        recipe,
        config.seed,
        adversarial,
    )
    path = checkpoints.cached_checkpoint(config.cache_dir, name, data.name, key)
    if verified(path, remove=remove):  # a damaged checkpoint is reported, removed and trained again
        return VictimRef(checkpoint=str(path), weights_id=key, origin="cache", **common)
    allowed = config.train_missing if train_missing is None else train_missing
    if not (embedded or allowed):
        raise AdvbenchError(
            f"no checkpoint of victim {name!r} for dataset {data.name!r}: train one with "
            f"`advbench train --victim {name} --dataset {data.name}`, pass --train-missing, "
            f"or give --victim-weights {name}=PATH"
        )
    return VictimRef(checkpoint=str(path), weights_id=key, origin="train", **common)


def is_default(name: str, registry: Registry) -> bool:
    return bool(getattr(registry.get("victim", name)[0].spec, "default", False))


def train(
    ref: VictimRef,
    split: ImageSplit,
    *,
    registry: Registry,
    device: Any,
    progress: bool = False,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
) -> dict[str, float]:
    """Train ``ref``'s victim on ``split`` and save it at ``ref.checkpoint``; returns loss and timing.

    The initial weights are drawn under ``ref.seed`` (part of the recipe), so a training is
    reproducible bit for bit on the same machine.
    """
    import torch

    from advbench.training import train_victim

    entry, _ = registry.get("victim", split_name(ref.name)[0])
    params = dict(ref.params)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ref.seed)
        model = entry.spec.build(num_classes=ref.num_classes, input_size=ref.input_size, **params)
    adv = ref.adversarial
    how = f", PGD-{adv.steps} adversarial training at eps {adv.eps:g}" if adv else ""
    log(f"training {ref.label} ({ref.recipe.steps} steps{how}, {ref.num_classes} ids) -> {ref.checkpoint}")
    stats = train_victim(
        model,
        split,
        ref.recipe,
        device=device,
        seed=ref.seed,
        progress=progress,
        desc=f"train {ref.name}",
        adversarial=adv,
    )
    checkpoints.save_checkpoint(
        Path(ref.checkpoint),
        model,
        name=ref.name,
        params={k: v for k, v in params.items() if k != "variant"},
        dataset=ref.dataset,
        dataset_fingerprint=ref.dataset_fingerprint,
        recipe=ref.recipe,
        seed=ref.seed,
        train_stats=stats,
        adversarial=adv,
    )
    log(f"trained {ref.label} in {stats['train_seconds']:.0f} s (final loss {stats['final_loss']:.3f})")
    return stats


def load(ref: VictimRef, registry: Registry) -> Victim:
    """The model behind ``ref`` (on CPU, in eval mode): an advbench checkpoint or the spec's ``load``."""
    path = Path(ref.checkpoint)
    if ref.origin == "train" and not path.exists():
        raise AdvbenchError(f"victim {ref.label} has not been trained yet ({path} is missing)")
    blob = checkpoints.read_checkpoint(path)
    if blob is not None:
        victim = checkpoints.build_from_checkpoint(blob, registry, path)
        return _with_file_info(victim, ref) if ref.origin == "user" else victim
    if ref.origin != "user":
        raise AdvbenchError(f"cached checkpoint {path} is not an advbench checkpoint; delete it")
    entry, _ = registry.get("victim", split_name(ref.name)[0])
    if entry.spec.load is None:
        raise AdvbenchError(
            f"{path} is not an advbench checkpoint and victim {ref.name!r} has no loader for other formats"
        )
    params = dict(ref.params)  # a family's variant included: torchreid:osnet_x1_0 loads an OSNet
    victim = entry.spec.load(path, input_size=ref.input_size, num_classes=ref.num_classes, **params)
    return _with_file_info(victim, ref)


def _with_file_info(victim: Victim, ref: VictimRef) -> Victim:
    """A user's checkpoint is named in records by its file name and full SHA-256."""
    sha = ref.file_sha256 or file_hash(ref.checkpoint, length=64)
    victim.info = {**victim_info(victim), "file": Path(ref.checkpoint).name, "sha256": sha}
    return victim


def victim_info(victim: Victim) -> dict[str, str]:
    """What a victim says of its weights (``Victim.info``, set by foreign loaders), as strings."""
    info = getattr(victim, "info", None)
    return {str(k): str(v) for k, v in info.items()} if isinstance(info, dict) else {}


class VictimLoader:
    """Loads each ref once per process and keeps it on ``device``, frozen; every lookup returns it in
    eval mode."""

    def __init__(self, registry: Registry, device: Any) -> None:
        self.registry = registry
        self.device = device
        self._models: dict[VictimRef, Victim] = {}

    def __call__(self, ref: VictimRef) -> Victim:
        if ref not in self._models:
            self._models[ref] = load(ref, self.registry).to(self.device).requires_grad_(False)
        return self._models[ref].eval()  # whatever an earlier task left it in (BatchNorm stats stay put)
