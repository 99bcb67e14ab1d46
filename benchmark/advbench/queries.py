"""Adversarial images, batch by batch: where a craft keeps them, one batch perturbed and checked,
a whole split crafted into the cache, and the craft's record.

Every batch an attack returns is checked (shape, NaN/Inf), clipped to [0, 1], quantised to 8 bits
unless ``--no-quantize``, and checked against its budget (L∞, or the changed pixels of a patch),
whether it becomes stored queries (:mod:`advbench.cell`), perturbed gallery images
(:mod:`advbench.gallery_side`) or the attacked train images of a detection (:mod:`advbench.detection`).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from advbench.api import AdvbenchError, Attack, FeatureBank, ImageSplit, Targets, Victim
from advbench.batching import run_batches
from advbench.context import TaskContext
from advbench.data.images import DiskImages
from advbench.io import NpyWriter
from advbench.metrics.perceptual import PerceptualMeter
from advbench.plan import CraftTask
from advbench.records import CraftRecord
from advbench.utils import seed_everything
from advbench.victims import victim_info


def adv_file(ctx: TaskContext, craft: CraftTask) -> Path:
    """Where a craft's adversarial queries are kept (``.npy``, uint8 when quantised)."""
    return ctx.cache / "adversarial" / craft.dataset / f"{craft.key}.npy"


def open_adv(path: Path, query: ImageSplit) -> ImageSplit:
    """A craft's stored queries with the labels of the clean ones: read in batches when quantised
    (uint8), in memory otherwise (``--no-quantize`` keeps float32)."""
    try:
        images: DiskImages | Tensor = DiskImages.open(path)
    except ValueError:
        images = torch.from_numpy(np.load(path))
    if images.shape != query.images.shape:
        raise AdvbenchError(
            f"stored adversarial queries {path} have shape {tuple(images.shape)}, expected {tuple(query.images.shape)}"
        )
    return ImageSplit(images, query.pids, query.camids)


def check_budget(adv: Tensor, clean: Tensor, eps: float, quantized: bool, name: str) -> None:
    """One-line error when ``adv`` leaves the L∞ ball of ``eps``/255 around ``clean``.

    With 8-bit quantisation a fractional eps may round up by half a grey level.
    """
    slack = 0.5 / 255 if quantized and eps != int(eps) else 0.0
    excess = float((adv - clean).abs().max()) - eps / 255.0 - slack
    if excess > 1e-5:
        raise AdvbenchError(f"attack {name} exceeded its L∞ budget of {eps:g}/255 by {excess * 255:.2f}/255")


def check_patch_budget(adv: Tensor, clean: Tensor, area: float, name: str) -> None:
    """One-line error when an image of ``adv`` differs from ``clean`` at more than
    ``floor(area * H * W)`` pixel locations (any channel): a patch attack's budget."""
    allowed = math.floor(area * adv.shape[-2] * adv.shape[-1])
    changed = (adv != clean).any(dim=1).flatten(1).sum(dim=1)
    worst = int(changed.max()) if changed.numel() else 0
    if worst > allowed:
        raise AdvbenchError(
            f"attack {name} changed {worst} pixel locations of an image, more than its patch of area "
            f"{area:g} allows ({allowed} of {adv.shape[-2]}x{adv.shape[-1]})"
        )


def finish(adv: Tensor, quantize: bool) -> Tensor:
    """Clip to [0, 1] and, by default, round to the nearest of the 256 grey levels."""
    adv = adv.detach().clamp(0, 1)
    return adv.mul(255).round().div(255) if quantize else adv


def perturb_batch(
    task: CraftTask,
    attack: Attack,
    source: Victim,
    gallery: FeatureBank,
    query: ImageSplit,
    rows: slice | Tensor,
    ctx: TaskContext,
    seed: int,
    targets: Tensor | None = None,
    queries: FeatureBank | None = None,
) -> tuple[Tensor, Tensor, float]:
    """(clean batch, checked and finished adversarial batch, seconds spent in ``perturb``).

    ``targets`` are the craft's chosen candidates of every query (``[Q, k]`` gallery rows), given
    to the attack for the batch's rows when the craft is targeted or demote. A gallery-side craft
    passes its chosen gallery images as ``query`` and the clean query features as ``queries``.
    """
    seed_everything(seed)
    images = query.batch(rows, ctx.device)
    chosen = {}
    if targets is not None:
        chosen["targets"] = Targets(task.threat_model.goal, targets[rows].to(ctx.device))
    if queries is not None:
        chosen["queries"] = queries
    ctx.synchronize()
    start = time.perf_counter()
    with ctx.autocast():
        adv = attack.perturb(
            source,
            images,
            query.pids[rows].to(ctx.device),
            query.camids[rows].to(ctx.device),
            gallery=gallery,
            **chosen,
        )
    ctx.synchronize()
    seconds = time.perf_counter() - start
    name = task.attack.name
    if adv.shape != images.shape:
        raise AdvbenchError(
            f"attack {name} returned images of shape {tuple(adv.shape)} for a batch of shape {tuple(images.shape)}"
        )
    if not torch.isfinite(adv).all():
        raise AdvbenchError(f"attack {name} returned NaN/Inf pixels")
    adv = finish(adv.float(), task.quantize)
    if task.patch_area is not None:
        check_patch_budget(adv, images, task.patch_area, name)
    else:
        check_budget(adv, images, task.eps, task.quantize, name)
    return images, adv, seconds


def craft_split(
    task: CraftTask,
    attack: Attack,
    source: Victim,
    gallery: FeatureBank,
    images: ImageSplit,
    ctx: TaskContext,
    *,
    targets: Tensor | None = None,
    queries: FeatureBank | None = None,
) -> tuple[dict[str, Any], float]:
    """Perturb every image of ``images`` on ``source``, batch by batch, into the craft's cache file
    (uint8 unless ``--no-quantize``); returns the perceptual report and the seconds ``perturb`` took.

    Each batch is seeded by its first row, so its draws do not depend on the batch size; a batch
    that runs out of memory is halved and redone.
    """
    meter, elapsed = PerceptualMeter(), 0.0

    def step(rows: slice) -> None:
        nonlocal elapsed
        clean, adv, seconds = perturb_batch(
            task, attack, source, gallery, images, rows, ctx, task.seed + rows.start, targets, queries
        )
        meter.update(clean, adv)
        block = adv.mul(255).round().to(torch.uint8) if task.quantize else adv
        writer.write(block.cpu().numpy())
        elapsed += seconds

    def shrink(batch: int) -> None:
        what = "gallery images" if task.threat_model.side == "gallery" else "queries"
        print(f"{task.label}: out of memory, crafting {batch} {what} at a time", file=sys.stderr)

    dtype = np.uint8 if task.quantize else np.float32
    with NpyWriter(adv_file(ctx, task), (len(images), *images.images.shape[1:]), dtype) as writer:
        run_batches(len(images), task.batch_size, step, on_shrink=shrink)
    return dataclasses.asdict(meter.report()), elapsed


def craft_record(
    task: CraftTask,
    ctx: TaskContext,
    model: Victim,
    n_images: int,
    perceptual: dict[str, Any],
    seconds: float,
    fit_seconds: float,
    **fields: Any,
) -> CraftRecord:
    """The record of a finished craft; ``fields`` are the threat's own (targets, attacked rows)."""
    return CraftRecord(
        key=task.key,
        dataset=task.dataset,
        fit_dataset=task.fit.source.dataset if task.fit else task.dataset,
        attack=task.attack.name,
        attack_params=dict(task.attack.params),
        eps=task.eps,
        source_victim=task.source.name,
        source_checkpoint=task.source.checkpoint,
        source_weights_id=task.source.weights_id,
        perceptual=perceptual,
        sec_per_image=seconds / n_images,
        fit_seconds=fit_seconds,
        n_query=n_images,
        input_size=tuple(task.source.input_size),
        seed=task.run_seed,
        quantized=task.quantize,
        batch_size=task.batch_size,
        adv_file=str(adv_file(ctx, task)),
        provenance=ctx.provenance,
        defence=task.defence.name if task.defence else "none",
        defence_params=dict(task.defence.params) if task.defence else {},
        source_info=victim_info(model),
        side=task.threat_model.side,
        goal=task.threat_model.goal,
        budget=task.threat_model.budget,
        patch_area=task.patch_area,
        **fields,
    )
