"""One cell: craft adversarial queries on a source victim, then evaluate them on each target victim.

Only the queries are perturbed (the gallery stays clean). Each batch of adversarial images is
clipped to [0, 1], quantised to 8 bits (unless ``--no-quantize``), checked against the L∞ budget,
measured against its clean batch (SSIM, MS-SSIM, norms) and appended to a file in the cache, so
memory is bounded by the batch and a later victim can be evaluated on the stored queries without
crafting them again. Each evaluation keeps its per-query AP (for bootstrap intervals) and, when
undefended, the first ranks of a few queries before and after (for the image strips) and the
Fréchet distance between clean and adversarial query features. Then the cell's detection
(:mod:`advbench.detection`). :func:`compute_cell` returns records; only the driver writes the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from advbench import attacks
from advbench.api import AdvbenchError, Attack, ImageSplit
from advbench.clean import CleanSet, CleanVictim, ap_list, as_scores, candidate_ranks_in, score
from advbench.context import TaskContext
from advbench.defences import attacked_victim, build_defence, defended_scores
from advbench.detection import detect
from advbench.features import extract
from advbench.gallery_side import attacked_split, craft_gallery, evaluate_gallery, gallery_targets
from advbench.metrics.detect import frechet_distance
from advbench.metrics.ranking import draw_targets
from advbench.metrics.reid import top_matches
from advbench.plan import Cell, CraftTask, EvalTask
from advbench.queries import adv_file, craft_record, craft_split, open_adv
from advbench.records import CraftRecord, EvalRecord, FailedRecord, Record
from advbench.victims import victim_info

EXAMPLE_QUERIES = 4  # queries whose top ranks an evaluation keeps, for the image strips
EXAMPLE_RANKS = 5


def craft(
    task: CraftTask,
    attack: Attack,
    clean: CleanSet,
    ctx: TaskContext,
    *,
    fit_seconds: float = 0.0,
    targets: Tensor | None = None,
) -> CraftRecord:
    """Craft ``task``'s adversarial queries into the cache, batch by batch, and describe them
    (``targets``: the candidates of a targeted or demote craft, :func:`craft_targets`)."""
    model = ctx.victim(task.source)
    source = attacked_victim(model, task.defence, ctx, task.seed)
    gallery = clean.victims[task.source.name].gallery
    perceptual, seconds = craft_split(task, attack, source, gallery, clean.query, ctx, targets=targets)
    chosen = None if targets is None else targets.tolist()
    return craft_record(task, ctx, model, len(clean.query), perceptual, seconds, fit_seconds, targets=chosen)


def craft_targets(task: CraftTask, clean: CleanSet) -> Tensor | None:
    """The chosen candidates of a targeted or demote craft (``[Q, k]`` gallery rows), else None.

    Drawn from the craft's own seed by :func:`advbench.metrics.ranking.draw_targets` (per query,
    ``k`` gallery images of other identities, uniformly), so a cell that evaluates stored queries
    draws the very targets the craft used; the craft record keeps them too.
    """
    if not task.targeted:
        return None
    gallery_pids = clean.victims[task.source.name].index.pids.cpu()
    return draw_targets(clean.query.pids, gallery_pids, task.n_targets, task.seed)


def _examples(
    clean_feats: Tensor, adv_feats: Tensor, target: CleanVictim, query: ImageSplit
) -> dict[str, list]:
    """The first ranks of a few evenly spaced queries, before and after the attack."""
    n = len(query)
    rows = sorted({round(i * (n - 1) / max(EXAMPLE_QUERIES - 1, 1)) for i in range(min(EXAMPLE_QUERIES, n))})
    index = torch.tensor(rows)
    out: dict[str, list] = {"query": rows}
    for side, feats in (("before", clean_feats), ("after", adv_feats)):
        order, match = top_matches(
            feats[index], target.index, query.pids[index], query.camids[index], EXAMPLE_RANKS
        )
        out[side], out[f"{side}_match"] = order.tolist(), match.tolist()
    return out


def evaluate(
    task: EvalTask,
    adv: ImageSplit,
    clean: CleanSet,
    ctx: TaskContext,
    *,
    batch_size: int,
    targets: Tensor | None = None,
) -> EvalRecord:
    """Score the adversarial queries ``adv`` on ``task.target`` against its clean gallery, through
    the task's defence when it has one (clean queries then go through it too). With ``targets``
    (a targeted or demote craft), also the chosen candidates' ranks before and after, undefended."""
    target: CleanVictim = clean.victims[task.target.name]
    model = ctx.victim(task.target)
    defence = build_defence(task.defence, ctx) if task.defence else None
    feats = None
    if task.defence is None or task.defence.ranking:
        feats = extract(
            model, adv, device=ctx.device, batch_size=batch_size, progress=False, autocast=ctx.autocast
        )
    extra: dict = {}
    if defence is None:
        assert feats is not None
        clean_scores = target.scores
        adv_scores = score(feats, target.index, clean.query, task.protocol, task.seed)
        fd = frechet_distance(target.query_features, feats)
        extra = {
            "frechet_distance": None if math.isnan(fd) else fd,
            "examples": _examples(target.query_features, feats, target, clean.query),
        }
        if targets is not None:
            extra["clean_target_ranks"] = candidate_ranks_in(target.query_features, target.index, targets)
            extra["adv_target_ranks"] = candidate_ranks_in(feats, target.index, targets)
    else:
        common = dict(protocol=task.protocol, seed=task.seed, batch_size=batch_size)
        known = (task.defence, task.protocol, task.seed)
        if known not in target.defended:
            target.defended[known], _ = defended_scores(
                defence, model, clean.query, target.query_features, target, clean.query, ctx, **common
            )
        clean_scores = target.defended[known]
        adv_scores, _ = defended_scores(defence, model, adv, feats, target, clean.query, ctx, **common)
    return EvalRecord(
        key=task.key,
        craft_key=task.craft_key,
        dataset=clean.dataset,
        target_victim=task.target.name,
        target_weights_id=task.target.weights_id,
        protocol=task.protocol,
        n_gallery=len(target.index),
        clean=as_scores(clean_scores),
        adv=as_scores(adv_scores),
        provenance=ctx.provenance,
        defence=task.defence.name if task.defence else "none",
        defence_params=dict(task.defence.params) if task.defence else {},
        threat=task.threat,  # type: ignore[arg-type]
        clean_ap=ap_list(clean_scores),
        adv_ap=ap_list(adv_scores),
        target_info=victim_info(model),
        **extra,
    )


def _attack_builder(task: CraftTask, fit_train: ImageSplit | None, ctx: TaskContext) -> Callable[[], Attack]:
    """Builds the cell's attack once, on first use (a learning attack reloads its fitted state)."""
    built: list[Attack] = []

    def get() -> Attack:
        if not built:
            attack = attacks.build_attack(task.attack, task.eps, ctx, task.patch_area)
            if task.fit is not None:
                if fit_train is None:
                    raise AdvbenchError(f"{task.label}: the fit's train split was not given")
                attacks.restore(attack, task.fit, fit_train, ctx)
            built.append(attack)
        return built[0]

    return get


def compute_cell(
    cell: Cell,
    clean: CleanSet,
    fit_train: ImageSplit | None,
    ctx: TaskContext,
    *,
    fit_seconds: float = 0.0,
    detect_train: ImageSplit | None = None,
) -> list[Record]:
    """Craft (unless the queries are stored), evaluate and detect one cell; returns the new records.

    ``fit_train`` is the train split the cell's fit used: a learning attack reloads the fitted
    state the planned fit step cached, it never trains here. ``detect_train`` is the craft's
    dataset's train split, for the detection. A failed detection is a failure of its own: the
    craft and evaluations still count.
    """
    task = cell.craft
    attack = _attack_builder(task, fit_train, ctx)
    records: list[Record] = []
    if task.threat_model.side == "gallery":
        chosen = gallery_targets(task, clean)  # drawn once: the craft and every evaluation share it
        images = attacked_split(clean, chosen)
        if not cell.crafted:
            records.append(craft_gallery(task, attack(), clean, ctx, chosen, images, fit_seconds=fit_seconds))
        adv = open_adv(adv_file(ctx, task), images)
        batch = 2 * task.batch_size
        return [
            *records,
            *(evaluate_gallery(ev, adv, chosen, clean, ctx, batch_size=batch) for ev in cell.evals),
        ]
    targets = craft_targets(task, clean)  # drawn once: the craft and every evaluation share them
    if not cell.crafted:
        records.append(craft(task, attack(), clean, ctx, fit_seconds=fit_seconds, targets=targets))
    adv = open_adv(adv_file(ctx, task), clean.query)
    for ev in cell.evals:
        records.append(evaluate(ev, adv, clean, ctx, batch_size=2 * task.batch_size, targets=targets))
    if cell.detect is not None:
        try:
            if detect_train is None:
                raise AdvbenchError("the dataset's train split was not given")
            records.append(detect(cell.detect, task, attack(), clean, detect_train, ctx))
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}".splitlines()[0]
            label = f"{task.label} detection"
            records.append(
                FailedRecord(key=f"{cell.detect.key}.failed", label=label, error=message, failed="detect")
            )
    return records
