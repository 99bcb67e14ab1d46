"""Building a planned attack and running its fit step (for attacks that learn)."""

from __future__ import annotations

import time

from advbench.api import Attack, ImageSplit
from advbench.context import TaskContext
from advbench.defences import attacked_victim
from advbench.plan import AttackChoice, FitTask
from advbench.records import FitRecord
from advbench.utils import seed_everything


def build_attack(choice: AttackChoice, eps: float, ctx: TaskContext, area: float | None = None) -> Attack:
    """The planned attack, built with its params (and, for a patch craft, its ``area``)."""
    entry, _ = ctx.registry.get("attack", choice.name)
    return entry.spec.build(**choice.build_kwargs(eps, area))


def fit_dir(ctx: TaskContext, task: FitTask):
    return ctx.cache / "attacks" / task.attack.name


def restore(attack: Attack, task: FitTask, train: ImageSplit, ctx: TaskContext) -> float:
    """Run ``attack.fit`` for ``task``, seeded from the fit's own key; returns the seconds it took.

    The planned fit step trains and caches under ``task.key``; cells call this again and the
    attack reloads what the fit step saved (the contract of :meth:`advbench.api.Attack.fit`). An
    adaptive fit learns against the source seen through its defence.
    """
    seed_everything(task.seed)
    start = time.perf_counter()
    attack.fit(
        attacked_victim(ctx.victim(task.source), task.defence, ctx, task.seed),
        train,
        cache_dir=fit_dir(ctx, task),
        key=task.key,
        device=ctx.device,
        progress=ctx.progress,
    )
    return time.perf_counter() - start


def fit(task: FitTask, train: ImageSplit, ctx: TaskContext) -> FitRecord:
    """The planned fit step: train the attack on ``task.source``'s dataset and cache the result."""
    seconds = restore(build_attack(task.attack, task.eps, ctx), task, train, ctx)
    return FitRecord(
        key=task.key,
        attack=task.attack.name,
        source_victim=task.source.name,
        fit_dataset=task.source.dataset,
        fit_seconds=seconds,
    )
