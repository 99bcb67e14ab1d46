"""OUT/index.html: the leaderboard as one self-contained web page.

The page is built from the same results frame as results.csv and summary.md (the summary's table
builders): a sortable, filterable results table (each row with the command that reproduces it and
its provenance), the white-box table and each transfer matrix as coloured grids, the clean-victim,
defence, targeted and detectability tables, and the image strips and plots of ``OUT/plots``, linked
relative to the page. Plain HTML, CSS and a small inline script: no request leaves the page, so it
works opened from disk on a machine without internet.

The CSS and script are files of their own (``static/``), inlined into the page.
``python -m advbench.webpage DIR`` rebuilds ``DIR/index.html`` from ``DIR/results.csv`` alone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from advbench.io import atomic_write_text
from advbench.records import Record
from advbench.summary import clean_table, defence_table, detect_table, targeted_tables
from advbench.webpage.cells import _e, colour, complete, contrast
from advbench.webpage.commands import _record_index, reproduce_command
from advbench.webpage.sections import (
    _disagreement_rows,
    _disagreements_section,
    _plots_section,
    _results_section,
    _strips_section,
    _table,
    _transfer_section,
    _whitebox_rows,
    _whitebox_section,
    strip_key,
)

PAGE = "index.html"


def _static(name: str) -> str:
    """A file of the page's ``static/`` folder (CSS, script), as text."""
    return (Path(__file__).parent / "static" / name).read_text(encoding="utf-8")


def render_page(
    frame: pd.DataFrame,
    figures: Sequence[str | Path] = (),
    records: Iterable[Record] | None = None,
    disagreements: Any = None,
    title: str = "advbench leaderboard",
) -> str:
    """The page of a results frame (as :func:`advbench.leaderboard.results_frame` makes it, or read
    from results.csv). ``figures``: image paths relative to the page (``plots/...``) that exist; only
    those are referenced. ``records`` (the store's) give each row's full provenance and defence
    parameters; ``disagreements`` (:class:`advbench.merge.Disagreement` objects or the text of a
    disagreements.csv) are listed at the top."""
    frame = complete(frame)
    names = [Path(f).as_posix() for f in figures]
    available = set(names)
    index = _record_index(records) if records is not None else {}
    strips, found = _strips_section(frame, available)
    frame["_strip"] = [  # a white-box query row's strip anchor (an adaptive craft has other queries)
        found.get(strip_key(r), "")
        if r.setting == "whitebox" and r.side == "query" and r.threat != "adaptive"
        else ""
        for r in frame.itertuples()
    ]
    used = {f for f in names if Path(f).name.startswith(("strip_", "transfer_"))}
    sections = [
        ("results", "Results", _results_section(frame, index)),
        ("clean", "Clean victims", ""),
        ("whitebox", "White-box", _whitebox_section(frame)),
        ("transfer", "Transfer", _transfer_section(frame, available)),
        ("defences", "Defences", ""),
        ("targeted", "Targeted", ""),
        ("detect", "Detectability", ""),
        ("strips", "Image strips", strips),
        ("plots", "Plots", _plots_section(names, used)),
    ]
    extra: dict[str, str] = {}
    if not _whitebox_rows(frame).empty:
        extra["clean"] = (
            '<section id="clean"><h2>Clean victims</h2>'
            + _table(clean_table(frame), "mAP ± half its interval, rank-1 and mINP in percent", index=True)
            + "</section>"
        )
        detect = detect_table(frame)
        if not detect.isna().all().all():
            extra["detect"] = (
                '<section id="detect"><h2>Detectability (mean over source victims)</h2>'
                "<p class=note>spectral_distance: mean |difference| of clean and adversarial mean log10 radial "
                "power spectra; hf_share: share of the perturbation's energy above half the Nyquist frequency; "
                "detector_auroc: a logistic detector of log spectra; frechet_distance: between clean and "
                "adversarial query features in the victim's embedding.</p>"
                + _table(detect, index=True)
                + "</section>"
            )
    defences = defence_table(frame)
    if defences is not None:
        extra["defences"] = (
            '<section id="defences"><h2>Defences (white-box drops, mean over source victims)</h2>'
            "<p class=note>transfer-to-defended: crafted on the undefended victim, evaluated through the "
            "defence; adaptive: crafted through it.</p>" + _table(defences) + "</section>"
        )
    targeted = targeted_tables(frame)
    if targeted:
        extra["targeted"] = (
            '<section id="targeted"><h2>Targeted and demote attacks</h2>'
            "<p class=note>Each query's chosen candidates: their mean normalised rank (0 top, 1 bottom) "
            "before and after ± half its interval, the share of pairs in the top-k after, the mAP drop.</p>"
            + "".join(
                f"<h3>{_e(side)}-side {_e(goal)}</h3>" + _table(table)
                for (side, goal), table in targeted.items()
            )
            + "</section>"
        )
    sections = [(a, n, extra.get(a, html)) for a, n, html in sections]
    nav = "".join(f'<a href="#{a}">{_e(n)}</a>' for a, n, html in sections if html)
    rows = _disagreement_rows(disagreements)
    if rows:
        nav = '<a href="#disagreements">Disagreements</a>' + nav
    datasets = ", ".join(sorted(frame["dataset"].astype(str).unique()))
    versions = ", ".join(sorted({str(v) for v in frame["advbench_version"].dropna().unique()}))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_static('page.css')}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p class=note>{len(frame)} rows · datasets {_e(datasets)} · "
        f'advbench {_e(versions)} · the same numbers as <a href="results.csv">results.csv</a> and '
        f'<a href="summary.md">summary.md</a></p><nav aria-label="sections">{nav}</nav></header><main>'
        + _disagreements_section(rows)
        + "".join(html for _, _, html in sections)
        + "</main><footer><p class=note>Commands reproduce a row with the run's defaults for victim weights "
        "(cached or trained), dataset parameters and data root; real datasets also need "
        "<code>--data-root</code>. mAP, rank-k in percent, Market-1501 protocol unless the row says "
        f"otherwise.</p></footer><script>{_static('page.js')}</script></body></html>\n"
    )


def page_figures(out: Path) -> list[Path]:
    """The images of ``out/plots`` (relative to ``out``), sorted."""
    folder = Path(out) / "plots"
    return sorted(p.relative_to(out) for p in [*folder.glob("*.png"), *folder.glob("*.jpg")])


def write_page(
    frame: pd.DataFrame,
    out: Path,
    figures: Sequence[str | Path] | None = None,
    records: Iterable[Record] | None = None,
    disagreements: Any = None,
) -> Path:
    """Write ``out/index.html`` (atomically) and return its path. ``figures`` default to the images
    under ``out/plots``; paths under ``out`` are taken relative to it. Disagreements default to
    ``out/disagreements.csv`` when a merge left one."""
    out = Path(out)
    if figures is None:
        figures = page_figures(out)

    def relative(figure: str | Path) -> Path:
        try:
            return Path(figure).relative_to(out)
        except ValueError:
            return Path(figure)

    rel = [relative(f) for f in figures]
    rel = [f for f in rel if (out / f).is_file()]
    if disagreements is None and (out / "disagreements.csv").is_file():
        disagreements = (out / "disagreements.csv").read_text()
    path = out / PAGE
    atomic_write_text(path, render_page(frame, rel, records, disagreements))
    return path


def read_results(path: Path) -> pd.DataFrame:
    """results.csv as a frame (``none`` and other words kept as text)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m advbench.webpage [DIR]``: rebuild DIR/index.html (default leaderboards) from its
    results.csv and plots."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = Path(args[0] if args else "leaderboards")
    path = write_page(read_results(out / "results.csv"), out)
    print(f"wrote {path}")
    return 0


__all__ = [
    "colour",
    "complete",
    "contrast",
    "main",
    "page_figures",
    "read_results",
    "render_page",
    "reproduce_command",
    "write_page",
]
