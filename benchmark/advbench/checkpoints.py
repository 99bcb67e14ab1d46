"""Victim checkpoints: advbench's own format, where they live in the cache, and how to rebuild them.

An advbench checkpoint is a ``torch.save`` dict with the state dict and everything needed to call
the victim spec's ``build`` again (name, variant, params, num_classes, input_size), plus what it was
trained on. Foreign checkpoints (an official release) go through the spec's own ``load``.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import torch

import advbench
from advbench.adversarial_training import AdversarialRecipe
from advbench.api import AdvbenchError, TrainRecipe, Victim
from advbench.io import atomic_torch_save
from advbench.plugins import Registry
from advbench.utils import stable_hash

FORMAT = "advbench-victim-v1"


def victim_key(
    name: str,
    params: dict[str, Any],
    version: str,
    dataset_fingerprint: str,
    input_size: tuple[int, int],
    recipe: TrainRecipe,
    seed: int,
    adversarial: AdversarialRecipe | None = None,
) -> str:
    """Cache key of a trained victim: everything its weights depend on.

    An adversarial recipe is hashed only when there is one, so standard victims keep their keys.
    """
    parts = [name, params, version, dataset_fingerprint, list(input_size), dataclasses.asdict(recipe), seed]
    if adversarial is not None:
        parts.append(dataclasses.asdict(adversarial))
    return stable_hash(*parts)


def cached_checkpoint(cache_dir: Path, name: str, dataset: str, key: str) -> Path:
    safe = name.replace(":", "-").replace("/", "-")
    return cache_dir / "victims" / f"{safe}__{dataset}__{key}.pt"


def save_checkpoint(
    path: Path,
    victim: Victim,
    *,
    name: str,
    params: dict[str, Any],
    dataset: str,
    dataset_fingerprint: str,
    recipe: TrainRecipe,
    seed: int,
    train_stats: dict[str, float],
    adversarial: AdversarialRecipe | None = None,
) -> None:
    atomic_torch_save(
        {
            "format": FORMAT,
            "victim": name,
            "params": params,
            "num_classes": victim.num_classes,
            "input_size": list(victim.input_size),
            "state_dict": {k: v.detach().cpu() for k, v in victim.state_dict().items()},
            "dataset": dataset,
            "dataset_fingerprint": dataset_fingerprint,
            "recipe": dataclasses.asdict(recipe),
            "seed": seed,
            "train": train_stats,
            "adversarial": dataclasses.asdict(adversarial) if adversarial is not None else None,
            "advbench_version": advbench.__version__,
            "structure": structure(victim),
        },
        path,
    )


def structure(victim: Victim) -> str:
    """A fingerprint of the built module: its printed layer tree (types, sizes, strides, ...) and
    parameter shapes. A change to the code that builds a victim (a stride, a pooling) changes it
    even when every weight keeps its shape."""
    shapes = sorted((k, tuple(v.shape)) for k, v in victim.state_dict().items())
    return stable_hash(repr(victim), shapes)


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The dict of an advbench checkpoint, or None when ``path`` holds another format."""
    path = Path(path)
    if not path.is_file():
        raise AdvbenchError(f"checkpoint not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):  # e.g. torchreid's engine stores rank1 as a NumPy scalar:
            return None  # not advbench's format (which holds tensors and plain values); the plugin reads it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdvbenchError(
            f"cannot read checkpoint {path}: not a readable torch checkpoint (truncated or damaged?): {first}"
        ) from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdvbenchError(
            f"cannot read checkpoint {path}: not a readable torch checkpoint (truncated or damaged?): {first}"
        ) from None
    return blob if isinstance(blob, dict) and blob.get("format") == FORMAT else None


def build_from_checkpoint(blob: dict[str, Any], registry: Registry, path: Path) -> Victim:
    """Rebuild a victim from an advbench checkpoint dict, loading its weights strictly."""
    entry, variant = registry.get("victim", blob["victim"])
    params = dict(blob["params"])
    if variant is not None:
        params["variant"] = variant
    victim = entry.spec.build(num_classes=blob["num_classes"], input_size=tuple(blob["input_size"]), **params)
    if blob.get("structure") not in (None, structure(victim)):
        raise AdvbenchError(
            f"checkpoint {path} was trained with another version of victim {blob['victim']!r}'s code "
            f"(its module structure differs): bump the spec's `version` so that it is trained again"
        )
    result = victim.load_state_dict(blob["state_dict"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise AdvbenchError(
            f"checkpoint {path} does not match victim {blob['victim']!r}: "
            f"{len(result.missing_keys)} missing keys {result.missing_keys[:5]}, "
            f"{len(result.unexpected_keys)} unexpected keys {result.unexpected_keys[:5]}"
        )
    return victim.eval()
