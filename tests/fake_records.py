"""Hand-made store records for leaderboard, plot and merge tests: one craft, and its evaluations."""

from __future__ import annotations

import dataclasses
from typing import Any

from advbench.records import CraftRecord, EvalRecord, Record, Scores

CLEAN = Scores(mAP=60.0, rank1=70.0, rank5=80.0, rank10=90.0, mINP=20.0)


def craft_record(attack: str, source: str, eps: float = 16.0, **fields: Any) -> CraftRecord:
    """A craft keyed ``attack-source-eps``; ``fields`` replace any default."""
    craft = CraftRecord(
        key=f"{attack}-{source}-{eps:g}",
        dataset="synthetic",
        fit_dataset="synthetic",
        attack=attack,
        attack_params={"steps": 10},
        eps=eps,
        source_victim=source,
        source_checkpoint="/ckpt",
        source_weights_id="w",
        perceptual={
            "ssim": 0.712345,
            "ms_ssim": 0.9,
            "ms_ssim_setting": "win3",
            "linf": 16.0,
            "l2": 3.2,
            "l0": 0.99,
        },
        sec_per_image=0.01,
        fit_seconds=0.0,
        n_query=10,
        input_size=(32, 16),
        seed=0,
        quantized=True,
        batch_size=64,
        adv_file="/adv.npy",
        provenance={"advbench_version": "0", "device": "cpu"},
    )
    return dataclasses.replace(craft, **fields)


def eval_record(craft: CraftRecord, target: str, adv_mAP: float, **fields: Any) -> EvalRecord:
    """``craft`` scored on ``target``: adversarial mAP and rank-k all ``adv_mAP``, clean :data:`CLEAN`."""
    record = EvalRecord(
        key=f"{craft.key}-{target}",
        craft_key=craft.key,
        dataset=craft.dataset,
        target_victim=target,
        target_weights_id="t",
        protocol="market",
        n_gallery=50,
        clean=CLEAN,
        adv=Scores(mAP=adv_mAP, rank1=adv_mAP, rank5=adv_mAP, rank10=adv_mAP, mINP=1.0),
    )
    return dataclasses.replace(record, **fields)


def cell_records(craft: CraftRecord, adv_mAP: dict[str, float], **eval_fields: Any) -> list[Record]:
    """The craft and its evaluation on each target of ``adv_mAP``."""
    return [craft, *(eval_record(craft, t, m, **eval_fields) for t, m in adv_mAP.items())]
