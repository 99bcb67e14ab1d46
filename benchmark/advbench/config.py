"""``RunConfig``: everything one ``advbench run`` depends on, and where caches and data live by default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROTOCOLS = ("market", "cuhk03-classic")
SIDES = ("query", "gallery")
GOALS = ("untargeted", "targeted", "demote")
BUDGETS = ("linf", "patch")
BACKENDS = ("local", "ray")


def default_cache_dir() -> Path:
    return Path(os.environ.get("ADVBENCH_CACHE", Path.home() / ".cache" / "advbench")).expanduser()


def default_data_root() -> Path | None:
    root = os.environ.get("ADVBENCH_DATA")
    return Path(root).expanduser() if root else None


@dataclass(frozen=True)
class RunConfig:
    """Everything one ``advbench run`` depends on (the CLI fills it from its flags and ``--config``).

    :func:`advbench.validate.validate` checks one against the registry before any work (the CLI
    calls it before :func:`advbench.runner.run`).

    ``threads`` pins torch's intra-op threads in every task on either backend (0: torch's own
    count in the driver, i.e. its cores), so that both backends do the same arithmetic. ``amp`` runs victims under
    CUDA autocast (bf16) while crafting and extracting features; it is ignored on CPU.
    ``defences`` selects the defence axis (``none`` = undefended); ``detect_images`` attacked
    train images teach each craft's spectral detector (0: no detectability measurements).
    ``sides``, ``goals`` and ``budgets`` select the threat models of the grid (default: untargeted
    L∞ query attacks, the grid before threat axes existed); a targeted or demote craft draws
    ``targets_per_query`` candidates per query. A patch-budget threat is crafted once per
    ``patch_areas`` value (fraction of the image; L∞ unbounded inside the patch) instead of per eps.
    A gallery-side craft perturbs up to ``gallery_images`` chosen gallery images.
    """

    datasets: str = "default"
    victims: str = "default"
    attacks: str = "default"
    eps: tuple[float, ...] = (16.0,)
    out: Path = Path("leaderboards")
    cache_dir: Path = field(default_factory=default_cache_dir)
    data_root: Path | None = field(default_factory=default_data_root)
    device: str = "auto"
    seed: int = 0
    victim_weights: Mapping[str, Path] = field(default_factory=dict)
    attack_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    defences: str = "none"
    defence_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    detect_images: int = 64
    dataset_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    victim_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    train_steps: int | None = None
    train_missing: bool = False
    fit_on: str | None = None
    input_size: tuple[int, int] | None = None
    batch_size: int = 64
    quantize: bool = True
    protocol: str = "market"
    progress: bool = True
    backend: str = "local"
    address: str | None = None
    threads: int = 0
    amp: bool = False
    sides: tuple[str, ...] = ("query",)
    goals: tuple[str, ...] = ("untargeted",)
    budgets: tuple[str, ...] = ("linf",)
    targets_per_query: int = 5
    patch_areas: tuple[float, ...] = (0.1,)
    gallery_images: int = 100
