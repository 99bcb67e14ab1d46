"""Cell records -> the leaderboard files: results.csv (long), whitebox.csv, transfer matrices, summary.md.

Every file is sorted and rounded the same way each time, so two runs with the same numbers write
byte-identical files (``sec_per_image`` and ``fit_seconds`` are wall-clock measurements, the columns that vary).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from advbench.io import atomic_write_text
from advbench.records import CraftRecord, EvalRecord, Record

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
    "clean_mAP",
    "adv_mAP",
    "mAP_drop",
    "rel_mAP_drop",
    "transfer_rate",
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
    "protocol",
]
DECIMALS = {
    "ssim": 4,
    "ms_ssim": 4,
    "rel_mAP_drop": 4,
    "transfer_rate": 4,
    "linf": 3,
    "l2": 4,
    "l0": 4,
    "sec_per_image": 4,
    "fit_seconds": 1,
}


def _row(craft: CraftRecord, ev: EvalRecord, white_drop: float | None) -> dict[str, Any]:
    clean, adv = ev.clean, ev.adv
    drop = clean.mAP - adv.mAP
    perceptual = craft.perceptual
    return {
        "dataset": craft.dataset,
        "fit_dataset": craft.fit_dataset,
        "attack": craft.attack,
        "attack_params": json.dumps(craft.attack_params, sort_keys=True, separators=(",", ":")),
        "eps": craft.eps,
        "source_victim": craft.source_victim,
        "target_victim": ev.target_victim,
        "setting": "whitebox" if ev.target_victim == craft.source_victim else "transfer",
        "clean_mAP": clean.mAP,
        "adv_mAP": adv.mAP,
        "mAP_drop": drop,
        "rel_mAP_drop": drop / clean.mAP if clean.mAP > 0 else float("nan"),
        # undefined unless the source's own (white-box) drop is positive
        "transfer_rate": drop / white_drop if white_drop is not None and white_drop > 0 else float("nan"),
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
    """One row per evaluation (craft x target victim) whose craft is among ``records``, in
    :data:`COLUMNS` order; ``transfer_rate`` divides by the craft's own white-box drop. Of two
    rows with the same :data:`KEYS`, the one that comes later in ``records`` is kept."""
    records = list(records)
    crafts = {r.key: r for r in records if isinstance(r, CraftRecord)}
    evals = [r for r in records if isinstance(r, EvalRecord) and r.craft_key in crafts]
    white = {
        (e.craft_key, e.protocol): e.clean.mAP - e.adv.mAP
        for e in evals
        if e.target_victim == crafts[e.craft_key].source_victim
    }
    rows = [_row(crafts[e.craft_key], e, white.get((e.craft_key, e.protocol))) for e in evals]
    # the same result recorded twice (e.g. a victim retrained under the same name): the later wins
    frame = pd.DataFrame(rows, columns=COLUMNS).drop_duplicates(KEYS, keep="last")
    if frame.empty:
        return frame
    frame = frame.sort_values(KEYS, kind="stable").reset_index(drop=True)
    for column in frame.select_dtypes("float").columns:
        frame[column] = frame[column].round(DECIMALS.get(column, 2))
    return frame


def _attack_label(frame: pd.DataFrame) -> pd.Series:
    """``attack`` plus its parameters when one attack appears with several parameter sets."""
    n_params = frame.groupby("attack")["attack_params"].transform("nunique")
    return frame["attack"].where(n_params <= 1, frame["attack"] + " " + frame["attack_params"])


def whitebox_table(frame: pd.DataFrame) -> pd.DataFrame:
    """(dataset, attack, eps) x victim: white-box mAP drop in points."""
    white = frame[frame["setting"] == "whitebox"].assign(attack=_attack_label)
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
    """One source x target matrix of adversarial mAP per (dataset, attack, eps)."""
    out = {}
    labelled = frame.assign(attack=_attack_label)
    for (dataset, attack, eps), group in labelled.groupby(["dataset", "attack", "eps"], sort=True):
        table = group.pivot_table(
            index="source_victim", columns="target_victim", values="adv_mAP", aggfunc="first", sort=True
        )
        table.index.name = "source \\ target"
        table.columns.name = None
        out[(dataset, attack, eps)] = table
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def _markdown(frame: pd.DataFrame, index: bool = False) -> str:
    """A GitHub table without the optional ``tabulate`` dependency."""
    frame = frame.reset_index() if index else frame
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = [
        "| "
        + " | ".join("" if pd.isna(v) else f"{v:g}" if isinstance(v, float) else str(v) for v in row)
        + " |"
        for row in frame.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body])


def summary_markdown(
    frame: pd.DataFrame, whitebox: pd.DataFrame, transfers: dict[tuple[str, str, float], pd.DataFrame]
) -> str:
    clean = (
        frame[frame["setting"] == "whitebox"]
        .groupby(["dataset", "source_victim"], sort=True)[["clean_mAP", "clean_rank1", "clean_mINP"]]
        .first()
    )
    perceptual = (
        frame[frame["setting"] == "whitebox"]
        .assign(attack=_attack_label)
        .groupby(["dataset", "attack", "eps"], sort=True)[["ssim", "ms_ssim", "linf", "l0", "sec_per_image"]]
        .mean()
        .round(4)
    )
    parts = [
        "# advbench leaderboard",
        "",
        "mAP, rank-k and mINP in percent (Market-1501 protocol); drops in points. Only queries are perturbed.",
        "",
        "## Clean victims",
        "",
        _markdown(clean, index=True),
        "",
        "## White-box mAP drop (attack x victim)",
        "",
        _markdown(whitebox),
        "",
        "## Imperceptibility and cost (mean over source victims)",
        "",
        _markdown(perceptual, index=True),
        "",
        "## Transfer: adversarial mAP (rows: crafted on, columns: evaluated on)",
    ]
    for (dataset, attack, eps), table in transfers.items():
        parts += ["", f"### {dataset} / {attack} / eps {eps:g}", "", _markdown(table.round(2), index=True)]
    return "\n".join(parts) + "\n"


def write(records: Iterable[Record], out: Path) -> pd.DataFrame:
    """Write every leaderboard file under ``out`` from ``records`` and return the long results frame.

    Nothing is written when there is no row (a run whose cells all failed keeps the files it found).
    Transfer files of cells no longer present are removed, so the folder describes exactly the
    records given.
    """
    out = Path(out)
    frame = results_frame(records)
    if frame.empty:
        return frame
    out.mkdir(parents=True, exist_ok=True)
    whitebox = whitebox_table(frame)
    transfers = transfer_tables(frame)
    files = {"results.csv": frame.to_csv(index=False), "whitebox.csv": whitebox.to_csv(index=False)}
    for (dataset, attack, eps), table in transfers.items():
        files[f"transfer_{_slug(dataset)}_{_slug(attack)}_eps{eps:g}.csv"] = table.to_csv()
    files["summary.md"] = summary_markdown(frame, whitebox, transfers)
    for name, text in files.items():
        atomic_write_text(out / name, text)
    for stale in out.glob("transfer_*.csv"):
        if stale.name not in files:
            stale.unlink()
    return frame


def publish(out: Path) -> tuple[pd.DataFrame, list[str]]:
    """Rebuild ``out``'s leaderboard from its whole results store, holding the folder's lock.

    Two runs writing to one folder therefore leave one consistent set describing both, never one
    run's files with the other's deleted. Returns the frame and one line per unreadable record.
    """
    from filelock import FileLock

    from advbench.store import ResultStore

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out / ".store")
    with FileLock(out / ".leaderboard.lock"):
        frame = write(store.records(), out)
    return frame, store.report()
