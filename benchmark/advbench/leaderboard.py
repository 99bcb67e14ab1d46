"""Cell records -> the leaderboard files: results.csv (long), whitebox.csv, transfer matrices,
summary.md and plots/.

Every file is sorted and rounded the same way each time, so two runs with the same numbers write
byte-identical files (``sec_per_image`` and ``fit_seconds`` are wall-clock measurements, the columns that vary).
Intervals are 95% paired bootstrap intervals over queries (1,000 resamples seeded by the run seed):
the same resampled queries for clean and adversarial AP, and for a row and its craft's white-box row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from advbench.io import atomic_write_text
from advbench.records import CraftRecord, EvalRecord, Record
from advbench.tables import (  # noqa: F401  (the tables, importable from here as before)
    COLUMNS,
    DECIMALS,
    INTERVALS,
    KEYS,
    RESAMPLES,
    TARGET_COLUMNS,
    TARGET_INTERVALS,
    attack_label,
    default_threat,
    results_frame,
    slug,
    strip_file,
    target_columns,
    transfer_tables,
    undefended,
    whitebox_table,
)

if TYPE_CHECKING:
    from advbench.plots import StripExample

StripSource = Callable[[CraftRecord, EvalRecord], "list[StripExample] | None"]
"""Pixels of an evaluation's example queries and their ranked gallery images (None: unavailable)."""


def write(
    records: Iterable[Record], out: Path, strips: StripSource | None = None, html: bool = True
) -> pd.DataFrame:
    """Write every leaderboard file under ``out`` from ``records`` and return the long results frame.

    Nothing is written when there is no row (a run whose cells all failed keeps the files it found).
    Transfer files and plots of cells no longer present are removed, so the folder describes exactly
    the records given. ``strips`` gives the pixels of the image strips (the data and cache of a
    run); without it the strips already there are kept. ``html``: also write ``index.html``, the
    leaderboard's web page (:mod:`advbench.webpage`; it lists ``out/disagreements.csv`` when a merge
    left one).
    """
    from advbench import plots
    from advbench.summary import summary_markdown

    out = Path(out)
    records = list(records)
    frame = results_frame(records)
    if frame.empty:
        return frame
    out.mkdir(parents=True, exist_ok=True)
    whitebox = whitebox_table(frame)
    transfers = transfer_tables(frame)
    files = {"results.csv": frame.to_csv(index=False), "whitebox.csv": whitebox.to_csv(index=False)}
    for (dataset, attack, eps), table in transfers.items():
        files[f"transfer_{slug(dataset)}_{slug(attack)}_eps{eps:g}.csv"] = table.to_csv()
    figures = plots.write_plots(undefended(frame), out)
    if strips is not None:
        figures += write_strips(records, out / "plots", strips)
    else:
        figures += sorted((out / "plots").glob("strip_*.jpg"))
    files["summary.md"] = summary_markdown(frame, whitebox, transfers, [f.relative_to(out) for f in figures])
    for name, text in files.items():
        atomic_write_text(out / name, text)
    for stale in out.glob("transfer_*.csv"):
        if stale.name not in files:
            stale.unlink()
    if html:
        from advbench.webpage import write_page

        write_page(frame, out, [f.relative_to(out) for f in figures], records)
    return frame


def strip_name(craft: CraftRecord) -> str:
    return strip_file(
        craft.dataset, craft.attack, craft.eps, craft.source_victim, craft.goal, craft.patch_area
    )


def write_strips(records: list[Record], folder: Path, strips: StripSource) -> list[Path]:
    """An image strip per undefended query-side craft with stored examples: its queries,
    perturbations and white-box top-5 before and after (a targeted or demote craft: its chosen
    candidates' ranks before and after instead of the top-5 before). Strips of crafts no longer
    present are removed."""
    from advbench.plots import image_strip

    crafts = {r.key: r for r in records if isinstance(r, CraftRecord)}
    written: list[Path] = []
    for ev in records:
        if not isinstance(ev, EvalRecord) or ev.examples is None or ev.threat != "none":
            continue
        craft = crafts.get(ev.craft_key)
        if craft is None or craft.defence != "none" or ev.target_victim != craft.source_victim:
            continue
        if craft.side != "query":  # a gallery-side craft's perturbed images are candidates, not queries
            continue
        examples = strips(craft, ev)
        if examples:
            goal = "" if craft.goal == "untargeted" else f" / {craft.goal}"
            title = f"{craft.dataset} / {craft.attack} eps {craft.eps:g}{goal} / white-box on {craft.source_victim}"
            written.append(image_strip(examples, folder / strip_name(craft), title=title))
    for stale in folder.glob("strip_*.jpg"):
        if stale not in written:
            stale.unlink()
    return sorted(written)


def publish(
    out: Path, strips: StripSource | None = None, html: bool = True
) -> tuple[pd.DataFrame, list[str]]:
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
        frame = write(store.records(), out, strips, html=html)
    return frame, store.report()
