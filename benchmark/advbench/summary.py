"""summary.md: the leaderboard as a person reads it, with intervals, defences, detectability and plots."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from advbench.tables import attack_label, default_threat, undefended

THREATS = {"transfer-to-defended": "transfer-to-defended drop", "adaptive": "adaptive drop"}


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


def with_interval(frame: pd.DataFrame, column: str, digits: int = 2) -> pd.Series:
    """``value ± half-width`` of the column's 95% bootstrap interval (the value alone without one)."""
    half = (frame[f"{column}_ci_high"] - frame[f"{column}_ci_low"]) / 2

    def show(value: float, h: float) -> str:
        if pd.isna(value):
            return ""
        return f"{value:.{digits}f}" if pd.isna(h) else f"{value:.{digits}f} ± {h:.{digits}f}"

    return pd.Series([show(v, h) for v, h in zip(frame[column], half, strict=True)], index=frame.index)


def _white(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["setting"] == "whitebox"].assign(attack=attack_label)


def clean_table(frame: pd.DataFrame) -> pd.DataFrame:
    white = _white(undefended(frame)).assign(clean_mAP=lambda f: with_interval(f, "clean_mAP"))
    return white.groupby(["dataset", "source_victim"], sort=True)[
        ["clean_mAP", "clean_rank1", "clean_mINP"]
    ].first()


def whitebox_intervals(frame: pd.DataFrame) -> pd.DataFrame:
    """(dataset, attack, eps) x victim: white-box mAP drop ± half its interval, undefended."""
    white = _white(undefended(frame)).assign(drop=lambda f: with_interval(f, "mAP_drop"))
    table = white.pivot_table(
        index=["dataset", "attack", "eps"], columns="source_victim", values="drop", aggfunc="first", sort=True
    )
    table.columns.name = None
    return table.reset_index()


def detect_table(frame: pd.DataFrame) -> pd.DataFrame:
    """(dataset, attack, eps): detectability, mean over source victims (white-box rows, undefended)."""
    columns = ["spectral_distance", "hf_share", "detector_auroc", "frechet_distance"]
    white = _white(undefended(frame))
    return white.groupby(["dataset", "attack", "eps"], sort=True)[columns].mean().round(4)


def defence_table(frame: pd.DataFrame) -> pd.DataFrame | None:
    """(dataset, attack, eps, defence): white-box drop undefended, transferred to the defended
    model and adaptive, and clean mAP through the defence; mean over source victims."""
    white = _white(default_threat(frame))
    defended = white[white["threat"] != "none"]
    if defended.empty:
        return None
    keys = ["dataset", "attack", "eps"]
    base = white[white["threat"] == "none"].groupby(keys)["mAP_drop"].mean().rename("undefended drop")
    drops = defended.pivot_table(
        index=[*keys, "defence"], columns="threat", values="mAP_drop", aggfunc="mean"
    )
    drops = drops.rename(columns=THREATS).reindex(columns=list(THREATS.values()))
    clean = defended.groupby([*keys, "defence"])["clean_mAP"].mean().rename("clean mAP with defence")
    table = drops.join(clean).reset_index().join(base, on=keys)
    order = [*keys, "defence", "undefended drop", *THREATS.values(), "clean mAP with defence"]
    return table[order].round(2)


def targeted_tables(frame: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """One table per targeted (side, goal): the chosen candidates' mean normalised rank (0 top, 1
    bottom) before and after ± half its interval, their top-1/5/10 shares after, and the mAP drop,
    per (dataset, attack, eps, source, target victim), undefended."""
    rows = frame[(frame["goal"] != "untargeted") & (frame["threat"] == "none")].assign(attack=attack_label)
    out = {}
    for (side, goal), group in rows.groupby(["side", "goal"], sort=True):
        table = group.assign(
            before=lambda f: with_interval(f, "clean_target_rank", digits=3),
            after=lambda f: with_interval(f, "adv_target_rank", digits=3),
        )
        keys = ["dataset", "attack", "eps", "source_victim", "target_victim"]
        shown = ["before", "after", "adv_target_top1", "adv_target_top5", "adv_target_top10", "mAP_drop"]
        table = table[[*keys, *shown]].rename(
            columns={
                "before": "rank before",
                "after": "rank after",
                "adv_target_top1": "top-1 % after",
                "adv_target_top5": "top-5 % after",
                "adv_target_top10": "top-10 % after",
            }
        )
        out[(side, goal)] = table.sort_values(keys).reset_index(drop=True)
    return out


def summary_markdown(
    frame: pd.DataFrame,
    whitebox: pd.DataFrame,
    transfers: dict[tuple[str, str, float], pd.DataFrame],
    figures: list[Path] | None = None,
) -> str:
    """The summary page: clean victims, white-box drops with intervals, imperceptibility and cost,
    detectability, defences (when the run has any), transfer matrices and links to the plots."""
    perceptual = (
        _white(undefended(frame))
        .groupby(["dataset", "attack", "eps"], sort=True)[["ssim", "ms_ssim", "linf", "l0", "sec_per_image"]]
        .mean()
        .round(4)
    )
    parts = [
        "# advbench leaderboard",
        "",
        "mAP, rank-k and mINP in percent (Market-1501 protocol); drops in points. Only queries are perturbed.",
        "`±` is half the 95% paired bootstrap interval over queries (1,000 resamples; `*_ci_low` / `*_ci_high`",
        "in results.csv).",
        "",
        "## Clean victims",
        "",
        _markdown(clean_table(frame), index=True),
        "",
        "## White-box mAP drop (attack x victim)",
        "",
        _markdown(whitebox_intervals(frame) if "mAP_drop_ci_low" in frame else whitebox),
        "",
        "## Imperceptibility and cost (mean over source victims)",
        "",
        _markdown(perceptual, index=True),
        "",
        "## Detectability (mean over source victims)",
        "",
        "Spectral distance: mean |difference| of clean and adversarial mean log10 radial power spectra (decades);",
        "hf_share: share of the perturbation's energy above half the Nyquist frequency; detector_auroc: a",
        "logistic detector of log spectra trained on attacked train images, scored on the queries; frechet_distance:",
        "between clean and adversarial query features in the victim's own embedding.",
        "",
        _markdown(detect_table(frame), index=True),
    ]
    defences = defence_table(frame)
    if defences is not None:
        parts += [
            "",
            "## Defences (white-box drops, mean over source victims)",
            "",
            "transfer-to-defended: crafted on the undefended victim, evaluated through the defence; adaptive:",
            "crafted through it (BPDA for non-differentiable transforms, EOT for randomised ones).",
            "",
            _markdown(defences),
        ]
    for (side, goal), table in targeted_tables(frame).items():
        push = "up (0 = top of the ranking)" if goal == "targeted" else "down (1 = bottom of the ranking)"
        parts += [
            "",
            f"## {side.capitalize()}-side {goal} attacks",
            "",
            f"Each query's chosen candidates (other identities, drawn per craft) pushed {push}: their mean",
            "normalised rank before and after ± half its 95% paired bootstrap interval, the share of",
            "(query, candidate) pairs in the top-k after, and the mAP drop.",
            "",
            _markdown(table),
        ]
    parts += ["", "## Transfer: adversarial mAP (rows: crafted on, columns: evaluated on)"]
    for (dataset, attack, eps), table in transfers.items():
        parts += ["", f"### {dataset} / {attack} / eps {eps:g}", "", _markdown(table.round(2), index=True)]
    if figures:
        parts += ["", "## Plots", ""]
        parts += [f"- [{f.stem}]({f.as_posix()})" for f in figures]
    return "\n".join(parts) + "\n"
