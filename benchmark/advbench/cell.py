"""One cell: craft adversarial queries on a source victim, then evaluate them on each target victim.

Only the queries are perturbed (the gallery stays clean). Each batch of adversarial images is
clipped to [0, 1], quantised to 8 bits (unless ``--no-quantize``), checked against the L∞ budget,
measured against its clean batch (SSIM, MS-SSIM, norms) and appended to a file in the cache, so
memory is bounded by the batch and a later victim can be evaluated on the stored queries without
crafting them again. :func:`compute_cell` returns records; only the driver writes the store.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from advbench import attacks
from advbench.api import AdvbenchError, Attack, FeatureBank, ImageSplit, Victim
from advbench.batching import run_batches
from advbench.clean import CleanSet, CleanVictim, score
from advbench.context import TaskContext
from advbench.data.images import DiskImages
from advbench.features import extract
from advbench.io import NpyWriter
from advbench.metrics.perceptual import PerceptualMeter
from advbench.metrics.reid import ReidScores
from advbench.plan import Cell, CraftTask, EvalTask
from advbench.records import CraftRecord, EvalRecord, Record, Scores
from advbench.utils import seed_everything


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


def _finish(adv: Tensor, quantize: bool) -> Tensor:
    """Clip to [0, 1] and, by default, round to the nearest of the 256 grey levels."""
    adv = adv.detach().clamp(0, 1)
    return adv.mul(255).round().div(255) if quantize else adv


def _perturb(
    task: CraftTask,
    attack: Attack,
    source: Victim,
    gallery: FeatureBank,
    query: ImageSplit,
    rows: slice,
    ctx: TaskContext,
) -> tuple[Tensor, Tensor, float]:
    """(clean batch, checked and finished adversarial batch, seconds spent in ``perturb``)."""
    seed_everything(task.seed + rows.start)  # each batch's draws depend on its rows only
    images = query.batch(rows, ctx.device)
    ctx.synchronize()
    start = time.perf_counter()
    with ctx.autocast():
        adv = attack.perturb(
            source,
            images,
            query.pids[rows].to(ctx.device),
            query.camids[rows].to(ctx.device),
            gallery=gallery,
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
    adv = _finish(adv.float(), task.quantize)
    check_budget(adv, images, task.eps, task.quantize, name)
    return images, adv, seconds


def craft(
    task: CraftTask, attack: Attack, clean: CleanSet, ctx: TaskContext, *, fit_seconds: float = 0.0
) -> CraftRecord:
    """Craft ``task``'s adversarial queries into the cache, batch by batch, and describe them."""
    source = ctx.victim(task.source)
    gallery = clean.victims[task.source.name].gallery
    query, meter, path = clean.query, PerceptualMeter(), adv_file(ctx, task)
    elapsed = 0.0

    def step(rows: slice) -> None:
        nonlocal elapsed
        images, adv, seconds = _perturb(task, attack, source, gallery, query, rows, ctx)
        meter.update(images, adv)
        block = adv.mul(255).round().to(torch.uint8) if task.quantize else adv
        writer.write(block.cpu().numpy())
        elapsed += seconds

    def shrink(batch: int) -> None:
        print(f"{task.label}: out of memory, crafting {batch} queries at a time", file=sys.stderr)

    dtype = np.uint8 if task.quantize else np.float32
    with NpyWriter(path, (len(query), *query.images.shape[1:]), dtype) as writer:
        run_batches(len(query), task.batch_size, step, on_shrink=shrink)
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
        perceptual=dataclasses.asdict(meter.report()),
        sec_per_image=elapsed / len(query),
        fit_seconds=fit_seconds,
        n_query=len(query),
        input_size=tuple(task.source.input_size),
        seed=task.run_seed,
        quantized=task.quantize,
        batch_size=task.batch_size,
        adv_file=str(path),
        provenance=ctx.provenance,
    )


def _scores(s: ReidScores) -> Scores:
    return Scores(
        mAP=100 * s.mAP,
        rank1=100 * s.rank(1),
        rank5=100 * s.rank(5),
        rank10=100 * s.rank(10),
        mINP=100 * s.mINP,
    )


def evaluate(
    task: EvalTask, adv: ImageSplit, clean: CleanSet, ctx: TaskContext, *, batch_size: int
) -> EvalRecord:
    """Score the adversarial queries ``adv`` on ``task.target`` against its clean gallery."""
    target: CleanVictim = clean.victims[task.target.name]
    model = ctx.victim(task.target)
    feats = extract(
        model, adv, device=ctx.device, batch_size=batch_size, progress=False, autocast=ctx.autocast
    )
    adv_scores = score(feats, target.index, clean.query, task.protocol, task.seed)
    return EvalRecord(
        key=task.key,
        craft_key=task.craft_key,
        dataset=clean.dataset,
        target_victim=task.target.name,
        target_weights_id=task.target.weights_id,
        protocol=task.protocol,
        n_gallery=len(target.index),
        clean=_scores(target.scores),
        adv=_scores(adv_scores),
        provenance=ctx.provenance,
    )


def compute_cell(
    cell: Cell,
    clean: CleanSet,
    fit_train: ImageSplit | None,
    ctx: TaskContext,
    *,
    fit_seconds: float = 0.0,
) -> list[Record]:
    """Craft (unless the queries are stored) and evaluate one cell; returns the new records.

    ``fit_train`` is the train split the cell's fit used: a learning attack reloads the fitted
    state the planned fit step cached, it never trains here.
    """
    task = cell.craft
    records: list[Record] = []
    if not cell.crafted:
        attack = attacks.build_attack(task.attack, task.eps, ctx)
        if task.fit is not None:
            if fit_train is None:
                raise AdvbenchError(f"{task.label}: the fit's train split was not given")
            attacks.restore(attack, task.fit, fit_train, ctx)
        records.append(craft(task, attack, clean, ctx, fit_seconds=fit_seconds))
    adv = open_adv(adv_file(ctx, task), clean.query)
    for ev in cell.evals:
        records.append(evaluate(ev, adv, clean, ctx, batch_size=2 * task.batch_size))
    return records
