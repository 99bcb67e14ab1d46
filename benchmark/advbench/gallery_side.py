"""Gallery-side crafts: chosen gallery images are perturbed, the queries stay clean.

The candidate attack of Zhou et al. ("Adversarial Ranking Attack and Defense", ECCV 2020): a
perturbed gallery image should rise in the rankings of chosen queries of other identities
(``targeted``, CA+) or sink in those of its own identity's queries (``demote``, CA-). Which images
and which queries is the seeded rule of :func:`advbench.metrics.ranking.draw_gallery_targets`,
drawn from the craft's own seed, so every cell that evaluates the stored images draws the same.

An evaluation re-extracts only the perturbed images on the target victim, swaps their features
into its clean gallery, and scores the clean queries against it (mAP, CMC) together with each
attacked (query, image) pair's rank before and after. Input defences transform queries, so
gallery-side crafts are evaluated undefended only; they have no detection and no image strip.
"""

from __future__ import annotations

from advbench.api import Attack, FeatureBank, ImageSplit
from advbench.clean import CleanSet, CleanVictim, ap_list, as_scores, candidate_ranks_in, score
from advbench.context import TaskContext
from advbench.features import extract
from advbench.metrics.detect import frechet_distance
from advbench.metrics.ranking import GalleryTargets, draw_gallery_targets
from advbench.metrics.reid import prepare_gallery
from advbench.plan import CraftTask, EvalTask
from advbench.queries import craft_record, craft_split
from advbench.records import CraftRecord, EvalRecord
from advbench.victims import victim_info


def gallery_targets(task: CraftTask, clean: CleanSet) -> GalleryTargets:
    """The craft's chosen gallery images and the queries each attacks (seeded by the craft)."""
    index = clean.victims[task.source.name].index
    return draw_gallery_targets(
        clean.query.pids,
        clean.query.camids,
        index.pids.cpu(),
        index.camids.cpu(),
        n_images=task.gallery_images,
        k=task.n_targets,
        goal=task.threat_model.goal,
        seed=task.seed,
    )


def attacked_split(clean: CleanSet, chosen: GalleryTargets) -> ImageSplit:
    """The chosen gallery images with their labels (pixels read from the decode cache)."""
    assert clean.gallery is not None, "a gallery-side cell needs the dataset's gallery images"
    rows = chosen.rows
    return ImageSplit(clean.gallery.images[rows], clean.gallery.pids[rows], clean.gallery.camids[rows])


def craft_gallery(
    task: CraftTask,
    attack: Attack,
    clean: CleanSet,
    ctx: TaskContext,
    chosen: GalleryTargets,
    images: ImageSplit,
    *,
    fit_seconds: float = 0.0,
) -> CraftRecord:
    """Perturb the craft's chosen gallery images (``chosen``, pixels ``images``) on the source victim,
    batch by batch, into the cache."""
    model = ctx.victim(task.source)
    source: CleanVictim = clean.victims[task.source.name]
    queries = FeatureBank(source.query_features, clean.query.pids, clean.query.camids)
    targets = chosen.padded(task.n_targets)
    perceptual, seconds = craft_split(
        task, attack, model, source.gallery, images, ctx, targets=targets, queries=queries
    )
    return craft_record(
        task,
        ctx,
        model,
        len(images),
        perceptual,
        seconds,
        fit_seconds,
        targets=chosen.queries,
        attacked=chosen.rows.tolist(),
    )


def evaluate_gallery(
    task: EvalTask,
    adv: ImageSplit,
    chosen: GalleryTargets,
    clean: CleanSet,
    ctx: TaskContext,
    *,
    batch_size: int,
) -> EvalRecord:
    """Score the clean queries on ``task.target`` against its gallery with the craft's perturbed
    images ``adv`` (of the gallery rows ``chosen.rows``) swapped in."""
    target: CleanVictim = clean.victims[task.target.name]
    model = ctx.victim(task.target)
    adv_feats = extract(
        model, adv, device=ctx.device, batch_size=batch_size, progress=False, autocast=ctx.autocast
    )
    features = target.index.features.clone()
    rows = chosen.rows.to(features.device)
    features[rows] = adv_feats.to(features.device, features.dtype)
    index = prepare_gallery(features, target.index.pids, target.index.camids, target.index.distance)
    adv_scores = score(target.query_features, index, clean.query, task.protocol, task.seed)
    q_rows, g_rows = chosen.pairs()
    pair_features = target.query_features[q_rows.to(target.query_features.device)]
    fd = frechet_distance(target.index.features[rows], adv_feats) if len(rows) > 1 else float("nan")
    return EvalRecord(
        key=task.key,
        craft_key=task.craft_key,
        dataset=clean.dataset,
        target_victim=task.target.name,
        target_weights_id=task.target.weights_id,
        protocol=task.protocol,
        n_gallery=len(target.index),
        clean=as_scores(target.scores),
        adv=as_scores(adv_scores),
        provenance=ctx.provenance,
        clean_ap=ap_list(target.scores),
        adv_ap=ap_list(adv_scores),
        frechet_distance=None if fd != fd else fd,
        target_info=victim_info(model),
        clean_target_ranks=candidate_ranks_in(pair_features, target.index, g_rows[:, None]),
        adv_target_ranks=candidate_ranks_in(pair_features, index, g_rows[:, None]),
    )
