"""How detectable a craft's queries are: their spectra against the clean ones, and a spectral
detector trained on the same attack applied to train images (never the queries it is scored on)."""

from __future__ import annotations

import torch

from advbench.api import Attack, ImageSplit
from advbench.batching import run_batches
from advbench.clean import CleanSet
from advbench.context import TaskContext
from advbench.defences import attacked_victim
from advbench.metrics.detect import SpectralMeter, auroc, fit_logistic, image_spectral_features
from advbench.plan import CraftTask, DetectTask
from advbench.queries import adv_file, open_adv, perturb_batch
from advbench.records import DetectRecord


def detect(
    task: DetectTask,
    craft_task: CraftTask,
    attack: Attack,
    clean: CleanSet,
    train: ImageSplit,
    ctx: TaskContext,
) -> DetectRecord:
    """Spectral distance and high-frequency share of the stored queries, and the AUROC on them of a
    logistic detector of spectral features trained on ``task.n_train`` clean and attacked train images."""
    adv = open_adv(adv_file(ctx, craft_task), clean.query)
    meter, q_clean, q_adv = SpectralMeter(), [], []

    def spectra(rows: slice) -> None:
        c, a = clean.query.batch(rows), adv.batch(rows)
        meter.update(c, a)
        q_clean.append(image_spectral_features(c))
        q_adv.append(image_spectral_features(a))

    run_batches(len(adv), craft_task.batch_size, spectra)
    n = min(task.n_train, len(train))
    picks = torch.linspace(0, len(train) - 1, n).round().long()
    source = attacked_victim(ctx.victim(craft_task.source), craft_task.defence, ctx, craft_task.seed)
    gallery = clean.victims[craft_task.source.name].gallery
    t_clean, t_adv = [], []

    def attack_train(rows: slice) -> None:
        index = picks[rows]
        images, adv_images, _ = perturb_batch(
            craft_task, attack, source, gallery, train, index, ctx, task.seed + rows.start
        )
        t_clean.append(image_spectral_features(images.cpu()))
        t_adv.append(image_spectral_features(adv_images.cpu()))

    run_batches(n, craft_task.batch_size, attack_train)
    x = torch.cat([*t_clean, *t_adv])
    y = torch.cat([torch.zeros(n), torch.ones(n)])
    detector = fit_logistic(x, y)
    xq = torch.cat([*q_clean, *q_adv])
    yq = torch.cat([torch.zeros(len(adv)), torch.ones(len(adv))])
    report = meter.report()
    return DetectRecord(
        key=task.key,
        craft_key=task.craft_key,
        spectral_distance=float(report.spectral_distance),
        hf_share=float(report.hf_share),
        detector_auroc=float(auroc(detector(xq), yq)),
        n_train=n,
    )
