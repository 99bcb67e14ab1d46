"""Cell records -> the leaderboard's tables: the long results frame, white-box and transfer tables.

The frame's columns and their order (:data:`COLUMNS`; the README documents each one), the rounding
(:data:`DECIMALS`) and the 95% paired bootstrap intervals over queries (1,000 resamples seeded by the
run seed: the same resampled queries for clean and adversarial AP, and for a row and its craft's
white-box row). :mod:`advbench.leaderboard` writes them to files; :mod:`advbench.summary`,
:mod:`advbench.plots` and :mod:`advbench.webpage` read them. Every name here is also importable
from :mod:`advbench.leaderboard`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from advbench.metrics.bootstrap import paired_intervals
from advbench.metrics.ranking import scores_from_ranks, target_intervals
from advbench.records import CraftRecord, DetectRecord, EvalRecord, Record

RESAMPLES = 1000
INTERVALS = ("clean_mAP", "adv_mAP", "mAP_drop", "transfer_rate")
TARGET_INTERVALS = ("clean_target_rank", "adv_target_rank", "target_rank_change")
TARGET_COLUMNS = [
    "n_targets",
    *TARGET_INTERVALS,
    *(f"{name}_ci_{end}" for name in TARGET_INTERVALS for end in ("low", "high")),
    *(f"{side}_target_top{k}" for k in (1, 5, 10) for side in ("clean", "adv")),
]
"""Columns of targeted and demote rows (NaN on untargeted ones): the chosen candidates' mean
normalised rank (0 top, 1 bottom) before, after and its change with 95% paired bootstrap intervals,
and the share (%) of (query, candidate) pairs within the top 1/5/10 before and after."""

# Column order of results.csv; the README documents each one.
COLUMNS = [
    "dataset",
    "fit_dataset",
    "attack",
    "attack_params",
    "eps",
    "source_victim",
    "target_victim",
    "setting",
    "defence",
    "threat",
    "side",
    "goal",
    "budget",
    "patch_area",
    "clean_mAP",
    "adv_mAP",
    "mAP_drop",
    "rel_mAP_drop",
    "transfer_rate",
    *(f"{name}_ci_{end}" for name in INTERVALS for end in ("low", "high")),
    "clean_rank1",
    "adv_rank1",
    "clean_rank5",
    "adv_rank5",
    "clean_rank10",
    "adv_rank10",
    "clean_mINP",
    "adv_mINP",
    "ssim",
    "ms_ssim",
    "ms_ssim_setting",
    "linf",
    "l2",
    "l0",
    "spectral_distance",
    "hf_share",
    "detector_auroc",
    "frechet_distance",
    *TARGET_COLUMNS,
    "sec_per_image",
    "fit_seconds",
    "n_query",
    "n_gallery",
    "input_size",
    "protocol",
    "seed",
    "quantized",
    "advbench_version",
    "device",
]
KEYS = [
    "dataset",
    "fit_dataset",
    "attack",
    "attack_params",
    "eps",
    "source_victim",
    "target_victim",
    "defence",
    "threat",
    "side",
    "goal",
    "budget",
    "patch_area",
    "protocol",
]
DECIMALS = {
    "ssim": 4,
    "ms_ssim": 4,
    "rel_mAP_drop": 4,
    "transfer_rate": 4,
    "transfer_rate_ci_low": 4,
    "transfer_rate_ci_high": 4,
    "spectral_distance": 4,
    "hf_share": 4,
    "detector_auroc": 4,
    "frechet_distance": 6,
    "linf": 3,
    "l2": 4,
    "l0": 4,
    "sec_per_image": 4,
    "fit_seconds": 1,
    **{c: 4 for c in TARGET_COLUMNS if "target_rank" in c},
}


def _ap(values: list[float | None] | None) -> np.ndarray | None:
    return (
        None if values is None else np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    )


def _intervals(craft: CraftRecord, ev: EvalRecord, white: EvalRecord | None) -> dict[str, float]:
    """The row's ``*_ci_low`` / ``*_ci_high`` columns (NaN for records without per-query AP)."""
    clean, adv = _ap(ev.clean_ap), _ap(ev.adv_ap)
    white_clean, white_adv = (_ap(white.clean_ap), _ap(white.adv_ap)) if white is not None else (None, None)
    if clean is None or adv is None:
        ci = dict.fromkeys(INTERVALS, (float("nan"), float("nan")))
    else:
        paired = white_clean is not None and white_adv is not None and white_clean.shape == clean.shape
        ci = paired_intervals(
            clean,
            adv,
            white_clean_ap=white_clean if paired else None,
            white_adv_ap=white_adv if paired else None,
            resamples=RESAMPLES,
            seed=craft.seed,
        )
    return {f"{name}_ci_{end}": ci[name][i] for name in INTERVALS for i, end in enumerate(("low", "high"))}


def target_columns(ev: EvalRecord, craft: CraftRecord) -> dict[str, float]:
    """The :data:`TARGET_COLUMNS` of an evaluation (NaN unless it ranked a craft's candidates).

    Query side: one row of ranks per query (its ``k`` candidates); gallery side: one per attacked
    (query, image) pair, so the bootstrap resamples pairs. ``n_targets`` is the most candidates
    (query side) or queries (gallery side) one attacked image has.
    """
    if ev.clean_target_ranks is None or ev.adv_target_ranks is None:
        return dict.fromkeys(TARGET_COLUMNS, float("nan"))
    clean = scores_from_ranks(np.asarray(ev.clean_target_ranks), ev.n_gallery)
    adv = scores_from_ranks(np.asarray(ev.adv_target_ranks), ev.n_gallery)
    ci = target_intervals(clean, adv, resamples=RESAMPLES, seed=craft.seed)
    out: dict[str, float] = {
        "n_targets": float(max(map(len, craft.targets)) if craft.targets else clean.k),
        "clean_target_rank": clean.mean_rank,
        "adv_target_rank": adv.mean_rank,
        "target_rank_change": adv.mean_rank - clean.mean_rank,
    }
    out.update({f"{n}_ci_{end}": ci[n][i] for n in TARGET_INTERVALS for i, end in enumerate(("low", "high"))})
    for k in (1, 5, 10):
        out[f"clean_target_top{k}"] = getattr(clean, f"top{k}")
        out[f"adv_target_top{k}"] = getattr(adv, f"top{k}")
    return out


def _row(
    craft: CraftRecord, ev: EvalRecord, white: EvalRecord | None, detect: DetectRecord | None
) -> dict[str, Any]:
    clean, adv = ev.clean, ev.adv
    drop = clean.mAP - adv.mAP
    white_drop = white.clean.mAP - white.adv.mAP if white is not None else None
    perceptual = craft.perceptual
    nan = float("nan")
    return {
        "dataset": craft.dataset,
        "fit_dataset": craft.fit_dataset,
        "attack": craft.attack,
        "attack_params": json.dumps(craft.attack_params, sort_keys=True, separators=(",", ":")),
        "eps": craft.eps,
        "source_victim": craft.source_victim,
        "target_victim": ev.target_victim,
        "setting": "whitebox" if ev.target_victim == craft.source_victim else "transfer",
        "defence": ev.defence,
        "threat": ev.threat,
        "side": craft.side,
        "goal": craft.goal,
        "budget": craft.budget,
        "patch_area": nan if craft.patch_area is None else craft.patch_area,
        "clean_mAP": clean.mAP,
        "adv_mAP": adv.mAP,
        "mAP_drop": drop,
        "rel_mAP_drop": drop / clean.mAP if clean.mAP > 0 else float("nan"),
        # undefined unless the source's own (white-box) drop is positive
        "transfer_rate": drop / white_drop if white_drop is not None and white_drop > 0 else float("nan"),
        **_intervals(craft, ev, white),
        **{
            f"{side}_rank{k}": getattr(s, f"rank{k}")
            for k in (1, 5, 10)
            for side, s in (("clean", clean), ("adv", adv))
        },
        "clean_mINP": clean.mINP,
        "adv_mINP": adv.mINP,
        "ssim": perceptual["ssim"],
        "ms_ssim": perceptual["ms_ssim"],
        "ms_ssim_setting": perceptual.get("ms_ssim_setting", ""),
        "linf": perceptual["linf"],
        "l2": perceptual["l2"],
        "l0": perceptual["l0"],
        "spectral_distance": detect.spectral_distance if detect else nan,
        "hf_share": detect.hf_share if detect else nan,
        "detector_auroc": detect.detector_auroc if detect else nan,
        "frechet_distance": nan if ev.frechet_distance is None else ev.frechet_distance,
        **target_columns(ev, craft),
        "sec_per_image": craft.sec_per_image,
        "fit_seconds": craft.fit_seconds,
        "n_query": craft.n_query,
        "n_gallery": ev.n_gallery,
        "input_size": "x".join(str(s) for s in craft.input_size),
        "protocol": ev.protocol,
        "seed": craft.seed,
        "quantized": craft.quantized,
        "advbench_version": craft.provenance.get("advbench_version", ""),
        "device": craft.provenance.get("device", ""),
    }


def results_frame(records: Iterable[Record]) -> pd.DataFrame:
    """One row per evaluation (craft x target victim x defence) whose craft is among ``records``, in
    :data:`COLUMNS` order; ``transfer_rate`` divides by the craft's own white-box drop under the
    same defence and threat. Of two rows with the same :data:`KEYS`, the one that comes later in
    ``records`` is kept."""
    records = list(records)
    crafts = {r.key: r for r in records if isinstance(r, CraftRecord)}
    detects = {r.craft_key: r for r in records if isinstance(r, DetectRecord)}
    evals = [r for r in records if isinstance(r, EvalRecord) and r.craft_key in crafts]

    def where(e: EvalRecord) -> tuple[str, str, str, str]:
        return (e.craft_key, e.protocol, e.defence, e.threat)

    white = {where(e): e for e in evals if e.target_victim == crafts[e.craft_key].source_victim}
    rows = [_row(crafts[e.craft_key], e, white.get(where(e)), detects.get(e.craft_key)) for e in evals]
    # the same result recorded twice (e.g. a victim retrained under the same name): the later wins
    frame = pd.DataFrame(rows, columns=COLUMNS).drop_duplicates(KEYS, keep="last")
    if frame.empty:
        return frame
    frame = frame.sort_values(KEYS, kind="stable").reset_index(drop=True)
    for column in frame.select_dtypes("float").columns:
        frame[column] = frame[column].round(DECIMALS.get(column, 2))
    return frame


def attack_label(frame: pd.DataFrame) -> pd.Series:
    """``attack`` plus its parameters when one attack appears with several parameter sets."""
    n_params = frame.groupby("attack")["attack_params"].transform("nunique")
    return frame["attack"].where(n_params <= 1, frame["attack"] + " " + frame["attack_params"])


def default_threat(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of untargeted L∞ query attacks (the grid before threat axes existed)."""
    mask = (frame["side"] == "query") & (frame["goal"] == "untargeted") & (frame["budget"] == "linf")
    return frame[mask]


def undefended(frame: pd.DataFrame) -> pd.DataFrame:
    """The untargeted query-attack rows evaluated without a defence (what the white-box and
    transfer tables and the plots show; targeted threats have tables of their own)."""
    frame = default_threat(frame)
    return frame[frame["threat"] == "none"]


def whitebox_table(frame: pd.DataFrame) -> pd.DataFrame:
    """(dataset, attack, eps) x victim: white-box mAP drop in points, undefended."""
    white = undefended(frame)
    white = white[white["setting"] == "whitebox"].assign(attack=attack_label)
    table = white.pivot_table(
        index=["dataset", "attack", "eps"],
        columns="source_victim",
        values="mAP_drop",
        aggfunc="first",
        sort=True,
    )
    table.columns.name = None
    return table.reset_index()


def transfer_tables(frame: pd.DataFrame) -> dict[tuple[str, str, float], pd.DataFrame]:
    """One source x target matrix of adversarial mAP per (dataset, attack, eps), undefended."""
    out = {}
    labelled = undefended(frame).assign(attack=attack_label)
    for (dataset, attack, eps), group in labelled.groupby(["dataset", "attack", "eps"], sort=True):
        table = group.pivot_table(
            index="source_victim", columns="target_victim", values="adv_mAP", aggfunc="first", sort=True
        )
        table.index.name = "source \\ target"
        table.columns.name = None
        out[(dataset, attack, eps)] = table
    return out


def slug(text: str) -> str:
    """``text`` as a file-name part: letters, digits and dots, other runs as one ``-``."""
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def strip_file(
    dataset: str,
    attack: str,
    eps: float,
    source: str,
    goal: str = "untargeted",
    patch_area: float | None = None,
) -> str:
    """The file name of a query-side craft's image strip in ``OUT/plots``: a targeted or demote
    craft's name ends in its goal, a patch craft's in its area; an untargeted L∞ craft's keeps the
    name it had before threat axes existed."""
    tail = "" if goal == "untargeted" else f"_{slug(goal)}"
    if patch_area is not None and not pd.isna(patch_area):
        tail += f"_area{float(patch_area):g}"
    return f"strip_{slug(dataset)}_{slug(attack)}_eps{float(eps):g}_{slug(source)}{tail}.jpg"
