"""Leaderboard figures as PNG files: transfer heatmaps, eps curves and query/ranking image strips.

Every renderer takes data and a path, writes one PNG and returns the path. Figures are built with
matplotlib's object-oriented :class:`~matplotlib.figure.Figure` API (Agg canvas, no display, no
global pyplot state), so renderers are safe in headless runs and threads and leave nothing open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from advbench.api import AdvbenchError

DPI = 150
STRIP_DPI = 100  # each image at about twice its pixel size
FONT = 10
MATCH, MISMATCH = "#1a9850", "#d73027"  # green: same identity as the query, red: another one
CHOSEN = "#2166ac"  # blue: a candidate a targeted or demote attack chose
TRANSFER_UNIT = "adversarial mAP (%)"  # what leaderboard.transfer_tables' cells hold


def _save(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    """PNG, or JPEG (quality 85) for a ``.jpg`` path: photos with amplified noise do not compress as PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    jpeg = {"pil_kwargs": {"quality": 85}} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    fig.savefig(path, dpi=dpi, bbox_inches="tight", **jpeg)
    return path


def _cell_text(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.1f}"


def heatmap_figure(table: pd.DataFrame, *, title: str, unit: str = TRANSFER_UNIT) -> Figure:
    """The transfer matrix as an annotated heatmap; cells whose source and target victim are the
    same (the white-box result) get a bold frame. Split from :func:`transfer_heatmap` for tests."""
    values = table.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    fig = Figure(figsize=(max(4.0, 1.2 * n_cols + 2.2), max(3.0, 0.8 * n_rows + 1.8)))
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto")
    finite = values[np.isfinite(values)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(n_rows):
        for j in range(n_cols):
            value = values[i, j]
            ax.text(
                j,
                i,
                _cell_text(value),
                ha="center",
                va="center",
                fontsize=FONT,
                color="black" if np.isfinite(value) and value > middle else "white",
            )
    for i, source in enumerate(table.index):
        for j, target in enumerate(table.columns):
            if source == target:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=3))
    ax.set_xticks(range(n_cols), [str(c) for c in table.columns], rotation=30, ha="right", fontsize=FONT)
    ax.set_yticks(range(n_rows), [str(r) for r in table.index], fontsize=FONT)
    ax.set_xlabel("target (evaluated on)", fontsize=FONT + 1)
    ax.set_ylabel("source (crafted on)", fontsize=FONT + 1)
    ax.set_title(f"{title}\n(framed: white-box, source = target)", fontsize=FONT + 1)
    fig.colorbar(image, ax=ax).set_label(unit, fontsize=FONT)
    return fig


def transfer_heatmap(table: pd.DataFrame, path: Path, *, title: str, unit: str = TRANSFER_UNIT) -> Path:
    """Write one source x target transfer matrix (as :func:`advbench.leaderboard.transfer_tables`
    gives it; ``unit`` labels the colourbar) as an annotated heatmap PNG."""
    return _save(heatmap_figure(table, title=title, unit=unit), path)


def eps_figure(frame: pd.DataFrame, *, dataset: str) -> Figure:
    """White-box adversarial mAP against eps, one line per (attack, source victim); each victim's
    clean mAP is a dashed line of the same colour."""
    from advbench.tables import attack_label

    labelled = frame.assign(attack=attack_label(frame))  # labels as the transfer tables give them
    white = labelled[(labelled["setting"] == "whitebox") & (labelled["dataset"] == dataset)]
    if white.empty:
        raise AdvbenchError(f"no white-box row for dataset {dataset!r}; plot a dataset the frame holds")
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.add_subplot()
    victims = sorted(white["source_victim"].unique())
    colours = {v: f"C{i % 10}" for i, v in enumerate(victims)}
    markers = "osD^v<>pPX*h"
    for i, (attack, by_attack) in enumerate(white.groupby("attack", sort=True)):
        for victim, line in by_attack.groupby("source_victim", sort=True):
            line = line.sort_values("eps")
            ax.plot(
                line["eps"],
                line["adv_mAP"],
                marker=markers[i % len(markers)],
                color=colours[victim],
                label=f"{attack} on {victim}",
            )
    for victim, clean in white.groupby("source_victim", sort=True)["clean_mAP"]:
        ax.axhline(clean.iloc[0], color=colours[victim], linestyle="--", linewidth=1, label=f"clean {victim}")
    ax.set_xticks(sorted(white["eps"].unique()))
    ax.set_xlabel("eps (L∞ budget, 1/255 units)", fontsize=FONT + 1)
    ax.set_ylabel("adversarial mAP (%)", fontsize=FONT + 1)
    ax.set_ylim(bottom=0)
    ax.set_title(f"{dataset}: white-box mAP against eps (dashed: clean)", fontsize=FONT + 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=FONT - 2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def eps_curves(frame: pd.DataFrame, path: Path, *, dataset: str) -> Path:
    """Write the white-box adversarial mAP of ``dataset`` against eps (leaderboard frame rows)."""
    return _save(eps_figure(frame, dataset=dataset), path)


@dataclass
class StripExample:
    """One query for :func:`image_strip`: images are (H, W, 3) floats in [0, 1]; ``before`` and
    ``after`` are the top-ranked gallery images before and after the attack, and ``*_match`` says
    whether each has the query's identity ``pid``.

    A targeted or demote craft's example also has its ``chosen`` candidates, their 1-based ranks
    ``(before, after)`` in ``chosen_ranks``, and ``after_chosen`` saying which of ``after`` is one
    of them; its strip shows the chosen candidates where the untargeted strip shows ``before``."""

    clean: np.ndarray
    adv: np.ndarray
    pid: int
    before: list[np.ndarray]
    before_match: list[bool]
    after: list[np.ndarray]
    after_match: list[bool]
    chosen: list[np.ndarray] | None = None
    chosen_ranks: list[tuple[int, int]] | None = None
    after_chosen: list[bool] | None = None


def amplified(clean: np.ndarray, adv: np.ndarray) -> np.ndarray:
    """The perturbation ``adv - clean`` scaled so its largest magnitude reaches 0 or 1, centred on
    0.5 (grey means unchanged): a perturbation of a few 1/255 would be invisible otherwise."""
    delta = np.asarray(adv, dtype=float) - np.asarray(clean, dtype=float)
    peak = np.abs(delta).max()
    return np.full_like(delta, 0.5) if peak == 0 else 0.5 + delta / (2 * peak)


def _check(example: StripExample, k: int) -> None:
    if example.clean.shape != example.adv.shape:
        raise AdvbenchError(
            f"strip example pid {example.pid}: clean {example.clean.shape} and adversarial "
            f"{example.adv.shape} images differ in shape; pass the same query crop"
        )
    for side, images, match in (
        ("before", example.before, example.before_match),
        ("after", example.after, example.after_match),
    ):
        if len(images) != k or len(match) != k:
            raise AdvbenchError(
                f"strip example pid {example.pid}: {len(images)} {side} images and {len(match)} "
                f"{side}_match flags; give exactly {k} of each"
            )
    if example.chosen is not None:
        ranks, flags = example.chosen_ranks or [], example.after_chosen or []
        if len(ranks) != len(example.chosen) or len(flags) != k:
            raise AdvbenchError(
                f"strip example pid {example.pid}: {len(example.chosen)} chosen images, "
                f"{len(ranks)} chosen_ranks and {len(flags)} after_chosen flags; give one rank pair "
                f"per chosen image and {k} flags"
            )


def _show(ax: Axes, image: np.ndarray, frame: str | None = None) -> None:
    ax.imshow(np.clip(image, 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_edgecolor(frame)
            spine.set_linewidth(4)


def strip_headers(k: int, chosen: int = 0) -> list[str]:
    """Column headers of :func:`image_strip` with ``k`` ranked gallery images per side, or with
    ``chosen`` candidates of a targeted or demote craft in place of the ``k`` before."""
    first = (
        [f"chosen {c}" for c in range(1, chosen + 1)]
        if chosen
        else [f"rank {r} before" for r in range(1, k + 1)]
    )
    return [
        "clean query",
        "perturbation (amplified)",
        "adversarial",
        *first,
        *(f"rank {r} after" for r in range(1, k + 1)),
    ]


def _ranked(example: StripExample) -> list[tuple[np.ndarray, str, str]]:
    """The gallery images of one strip row after the query columns: (image, frame, label)."""
    after_chosen = example.after_chosen or [False] * len(example.after)
    after = [
        (image, CHOSEN if chosen else MATCH if match else MISMATCH, "")
        for image, match, chosen in zip(example.after, example.after_match, after_chosen, strict=True)
    ]
    if example.chosen is None:
        before = [
            (i, MATCH if m else MISMATCH, "")
            for i, m in zip(example.before, example.before_match, strict=True)
        ]
        return before + after
    ranks = example.chosen_ranks or []
    chosen = [(i, CHOSEN, f"rank {b} → {a}") for i, (b, a) in zip(example.chosen, ranks, strict=True)]
    return chosen + after


def strip_figure(examples: Sequence[StripExample], *, title: str, k: int = 5) -> Figure:
    """The image grid of :func:`image_strip`, one row per example."""
    if not examples:
        raise AdvbenchError("image_strip needs at least one StripExample")
    n_chosen = len(examples[0].chosen or [])
    for example in examples:
        _check(example, k)
        if len(example.chosen or []) != n_chosen:
            raise AdvbenchError(
                f"strip example pid {example.pid}: {len(example.chosen or [])} chosen images where the "
                f"first example has {n_chosen}; give every example of a strip the same number"
            )
    headers = strip_headers(k, n_chosen)
    height, width = examples[0].clean.shape[:2]
    cell = 1.3
    label_room = 0.25 if n_chosen else 0.0
    fig = Figure(figsize=(cell * len(headers), (cell * height / width + label_room) * len(examples) + 0.9))
    axes = fig.subplots(
        len(examples), len(headers), squeeze=False, gridspec_kw={"wspace": 0.08, "hspace": 0.1 + label_room}
    )
    for row, example in zip(axes, examples, strict=True):
        _show(row[0], example.clean)
        _show(row[1], amplified(example.clean, example.adv))
        _show(row[2], example.adv)
        for ax, (image, frame, label) in zip(row[3:], _ranked(example), strict=True):
            _show(ax, image, frame)
            if label:
                ax.set_xlabel(label, fontsize=FONT - 2)
        row[0].set_ylabel(f"pid {example.pid}", fontsize=FONT - 1)
    for ax, header in zip(axes[0], headers, strict=True):
        ax.set_title(header.replace(" (", "\n("), fontsize=FONT - 2)
    legend = "green frame: same identity as the query, red: another"
    if n_chosen:
        legend = f"blue frame: a chosen candidate, its rank before → after; {legend}"
    fig.suptitle(f"{title}\n({legend})", fontsize=FONT + 1)
    return fig


def image_strip(examples: list[StripExample], path: Path, *, title: str) -> Path:
    """Write one row per query: clean | amplified perturbation | adversarial | top-5 gallery before
    the attack | top-5 after, gallery images framed green (same identity) or red (another); for a
    targeted or demote craft the chosen candidates (framed blue, labelled with their rank before
    and after) take the place of the top-5 before.
    ``path`` may end in ``.jpg`` (what the leaderboard writes: a quarter of the PNG's size)."""
    return _save(strip_figure(examples, title=title), path, dpi=STRIP_DPI)


def plot_names(frame: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    """File name -> what it shows, for every plot :func:`write_plots` makes of ``frame``."""
    from advbench.tables import slug, transfer_tables

    names: dict[str, tuple[str, ...]] = {}
    for dataset, attack, eps in transfer_tables(frame):
        names[f"transfer_{slug(dataset)}_{slug(attack)}_eps{eps:g}.png"] = (
            "transfer",
            dataset,
            attack,
            eps,
        )
    white = frame[frame["setting"] == "whitebox"]
    for dataset, eps in white.groupby("dataset", sort=True)["eps"]:
        if eps.nunique() >= 2:
            names[f"eps_{slug(dataset)}.png"] = ("eps", dataset)
    return names


def write_plots(frame: pd.DataFrame, out: Path) -> list[Path]:
    """Write a heatmap per (dataset, attack, eps) transfer matrix and, for every dataset run at two
    or more eps, its eps curves into ``out/plots``; plots of cells no longer in ``frame`` are
    removed. Returns the written paths, sorted."""
    from advbench.tables import transfer_tables

    folder = Path(out) / "plots"
    if frame.empty:
        return []
    tables = transfer_tables(frame)
    written = []
    for name, what in plot_names(frame).items():
        if what[0] == "transfer":
            _, dataset, attack, eps = what
            title = f"{dataset} / {attack} / eps {eps:g}: transfer"
            written.append(transfer_heatmap(tables[(dataset, attack, eps)], folder / name, title=title))
        else:
            written.append(eps_curves(frame, folder / name, dataset=what[1]))
    for stale in [*folder.glob("transfer_*.png"), *folder.glob("eps_*.png")]:
        if stale not in written:
            stale.unlink()
    return sorted(written)
