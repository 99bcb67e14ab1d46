"""The sections of the page: results table, grids, summary tables, strips, plots, disagreements."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from advbench.records import CraftRecord, EvalRecord
from advbench.summary import (
    whitebox_intervals,
    with_interval,
)
from advbench.tables import DECIMALS, attack_label, slug, strip_file, transfer_tables, undefended
from advbench.webpage.cells import (
    _cell_text,
    _e,
    _num,
    colour,
)
from advbench.webpage.commands import _provenance, _row_key, reproduce_command

FILTERS = [
    ("dataset", "dataset"),
    ("attack", "attack"),
    ("eps", "eps"),
    ("source_victim", "source"),
    ("target_victim", "target"),
    ("defence", "defence"),
    ("threat", "threat"),
    ("side", "side"),
    ("goal", "goal"),
]
"""(column, label) of each filter of the results table."""
TABLE = [
    ("dataset", "dataset"),
    ("attack", "attack"),
    ("eps", "eps"),
    ("source_victim", "source"),
    ("target_victim", "target"),
    ("setting", "setting"),
    ("clean_mAP", "clean_mAP"),
    ("adv_mAP", "adv_mAP"),
    ("mAP_drop", "mAP_drop"),
    ("transfer_rate", "transfer_rate"),
    ("adv_rank1", "adv_rank1"),
    ("ssim", "ssim"),
    ("linf", "linf"),
    ("defence", "defence"),
    ("threat", "threat"),
    ("side", "side"),
    ("goal", "goal"),
]
"""(results.csv column, header) of the results table, in order; metrics keep their CSV names."""
METRICS = {"eps", "clean_mAP", "adv_mAP", "mAP_drop", "transfer_rate", "adv_rank1", "ssim", "linf"}
"""Numeric columns of the results table (sorted as numbers; ``±`` where results.csv has an interval)."""


def _table(frame: pd.DataFrame, caption: str | None = None, index: bool = False) -> str:
    """A plain HTML table of ``frame`` (values as summary.md shows them)."""
    frame = frame.reset_index() if index else frame
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    head = "".join(
        f'<th scope="col"{" class=num" if n else ""}>{_e(c)}</th>'
        for c, n in zip(frame.columns, numeric, strict=True)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if n else ''}>{_e(_cell_text(v))}</td>"
            for v, n in zip(row, numeric, strict=True)
        )
        + "</tr>"
        for row in frame.itertuples(index=False)
    )
    cap = f"<p class=note>{_e(caption)}</p>" if caption else ""
    return (
        f'{cap}<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    )


def _legend(what: str) -> str:
    return (
        f'<div class="legend" aria-hidden="true"><span>0%</span><span class="bar"></span>'
        f"<span>100% of clean mAP lost</span></div><p class=note>{_e(what)}</p>"
    )


def _grid(
    index: list[tuple[str, ...]],
    index_names: list[str],
    columns: list[str],
    text: Mapping[tuple[tuple[str, ...], str], str],
    share: Mapping[tuple[tuple[str, ...], str], float],
    corner: str = "",
    label: str = "",
) -> str:
    """A coloured grid: a row per ``index`` entry, a cell per column holding ``text`` on the colour of
    ``share`` (what part of the clean mAP the attack destroyed)."""
    heads = "".join(f'<th scope="col">{_e(n)}</th>' for n in index_names[:-1])
    heads += f'<th scope="col">{_e(corner or index_names[-1])}</th>'
    heads += "".join(f'<th scope="col" class="num">{_e(c)}</th>' for c in columns)
    body = []
    for key in index:
        cells = "".join(f"<td>{_e(v)}</td>" for v in key[:-1]) + f'<th scope="row">{_e(key[-1])}</th>'
        for column in columns:
            value = text.get((key, column), "")
            if not value:
                cells += '<td class="cell"></td>'
                continue
            s = share.get((key, column), float("nan"))
            lost = "" if pd.isna(s) else f"{max(s, 0.0):.0%} of clean mAP lost"
            number, _, half = value.partition(" ± ")
            shown = _e(number) + (f' <span class="ci">± {_e(half)}</span>' if half else "")
            cells += f'<td class="cell" style="background:{colour(s)}" title="{_e(lost)}">{shown}</td>'
        body.append(f"<tr>{cells}</tr>")
    aria = f' aria-label="{_e(label)}"' if label else ""
    return (
        f'<div class="scroll"><table class="grid"{aria}><thead><tr>{heads}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _whitebox_section(frame: pd.DataFrame) -> str:
    white = undefended(frame)
    white = white[white["setting"] == "whitebox"].assign(attack=attack_label)
    if white.empty:
        return ""
    table = whitebox_intervals(frame)
    victims = [c for c in table.columns if c not in ("dataset", "attack", "eps")]
    keys = [(str(r.dataset), str(r.attack), f"{float(r.eps):g}") for r in table.itertuples()]
    text = {
        (k, v): str(table.at[i, v]) if isinstance(table.at[i, v], str) else ""
        for i, k in enumerate(keys)
        for v in victims
    }
    share = {
        ((str(r.dataset), str(r.attack), f"{float(r.eps):g}"), str(r.source_victim)): r.rel_mAP_drop
        for r in white.itertuples()
    }
    return (
        '<section id="whitebox"><h2>White-box mAP drop (attack × victim)</h2>'
        + _legend(
            "mAP drop in points ± half its 95% interval, attack evaluated on the victim it was crafted on."
        )
        + _grid(keys, ["dataset", "attack", "eps"], victims, text, share, "eps", "white-box mAP drop")
        + "</section>"
    )


def _transfer_section(frame: pd.DataFrame, figures: set[str]) -> str:
    labelled = undefended(frame).assign(attack=attack_label)
    labelled = labelled.assign(adv_text=with_interval(labelled, "adv_mAP"))
    parts = []
    for (dataset, attack, eps), table in transfer_tables(frame).items():
        group = labelled[
            (labelled["dataset"] == dataset) & (labelled["attack"] == attack) & (labelled["eps"] == eps)
        ]
        sources = [(str(s),) for s in table.index]
        targets = [str(t) for t in table.columns]
        text = {((str(r.source_victim),), str(r.target_victim)): r.adv_text for r in group.itertuples()}
        share = {((str(r.source_victim),), str(r.target_victim)): r.rel_mAP_drop for r in group.itertuples()}
        title = f"{dataset} / {attack} / eps {eps:g}"
        png = f"plots/transfer_{slug(dataset)}_{slug(attack)}_eps{eps:g}.png"
        image = (
            f'<details class="strip"><summary>heatmap image</summary><img src="{_e(png)}" '
            f'alt="{_e(title)}: transfer heatmap of adversarial mAP"></details>'
            if png in figures
            else ""
        )
        parts.append(
            f"<h3>{_e(title)}</h3>"
            + _grid(
                sources, ["source"], targets, text, share, "crafted on \\ evaluated on", f"transfer {title}"
            )
            + image
        )
    if not parts:
        return ""
    return (
        '<section id="transfer"><h2>Transfer: adversarial mAP</h2>'
        + _legend(
            "Rows: crafted on; columns: evaluated on; the diagonal is white-box. Adversarial mAP ± half its interval."
        )
        + "".join(parts)
        + "</section>"
    )


def _results_section(
    frame: pd.DataFrame, index: Mapping[tuple[Any, ...], tuple[CraftRecord, EvalRecord]]
) -> str:
    n_params = frame.groupby("attack")["attack_params"].transform("nunique")
    shown = {c: with_interval(frame, c, DECIMALS.get(c, 2)) for c in METRICS if f"{c}_ci_low" in frame}
    selects = []
    for column, label in FILTERS:
        values = frame[column].map(lambda v, c=column: f"{float(v):g}" if c == "eps" else str(v))
        options = sorted(values.unique(), key=lambda v: (len(v) if column == "eps" else 0, v))
        opts = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in options)
        selects.append(
            f'<label for="f-{column}">{_e(label)}<select id="f-{column}" data-filter="{column}">'
            f'<option value="">all</option>{opts}</select></label>'
        )
    heads = [
        f'<th scope="col"{" class=num" if c in METRICS else ""} aria-sort="none" data-col="{c}" '
        f'data-type="{"num" if c in METRICS else "text"}">'
        f'<button type="button" aria-label="sort by {_e(label)}">{_e(label)}</button></th>'
        for c, label in TABLE
    ]
    heads.append('<th scope="col">reproduce · provenance</th>')
    body = []
    for i, row in enumerate(frame.to_dict("records")):
        pair = index.get(_row_key(row))
        white = row["setting"] == "whitebox"
        eps = f"{float(row['eps']):g}"
        data = " ".join(f'data-{c}="{_e(eps if c == "eps" else row[c])}"' for c, _ in FILTERS)
        prov = _provenance(row, pair)
        title = "; ".join(f"{k} {v}" for k, v in prov if v)
        cells = []
        for column, _ in TABLE:
            value = row[column]
            if column == "eps":
                cells.append(f'<td class="num" data-v="{_e(value)}">{_e(eps)}</td>')
            elif column in METRICS:
                text = shown[column].iloc[i] if column in shown else _num(value, DECIMALS.get(column, 2))
                number, _, half = text.partition(" ± ")
                extra = f' <span class="ci">± {_e(half)}</span>' if half else ""
                raw = "" if pd.isna(value) else repr(float(value))
                cells.append(f'<td class="num" data-v="{raw}">{_e(number)}{extra}</td>')
            elif column == "setting":
                badge = (
                    '<span class="badge wb" title="white-box: evaluated on the victim it was crafted on">'
                    "◆ white-box</span>"
                    if white
                    else '<span class="badge tr">transfer</span>'
                )
                cells.append(f'<td data-v="{_e(value)}">{badge}</td>')
            elif column == "attack" and n_params.iloc[i] > 1:
                params = f'<span class="params">{_e(row["attack_params"])}</span>'
                cells.append(f'<td data-v="{_e(value)}">{_e(value)}{params}</td>')
            else:
                cells.append(f"<td>{_e(value)}</td>")
        command = reproduce_command(row, pair[0] if pair else None)
        anchor = row.get("_strip")  # the anchor of this row's image strip, when it has one
        strip = f'<p><a href="#{_e(anchor)}">image strip of this craft</a></p>' if anchor else ""
        dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in prov)
        cells.append(
            f'<td><details class="row"><summary>command</summary>'
            f'<code class="cmd" id="cmd-{i}">{_e(command)}</code>'
            f'<button type="button" class="copy" data-for="cmd-{i}" aria-label="copy the command of row {i + 1}">'
            f'copy</button>{strip}<dl class="prov">{dl}</dl></details></td>'
        )
        cls = ' class="whitebox"' if white else ""
        body.append(f'<tr{cls} data-i="{i}" {data} title="{_e(title)}">{"".join(cells)}</tr>')
    return (
        '<section id="results"><h2>Results</h2>'
        '<p class="note">One row per evaluation, as in results.csv: mAP in percent, drops in points, '
        "<code>±</code> half the 95% paired bootstrap interval over queries. "
        '<span class="badge wb">◆ white-box</span> rows are evaluated on the victim the attack was crafted on. '
        "Click a header to sort (numbers first largest), choose filters to narrow; "
        "each row's <em>command</em> reproduces it and lists its provenance (also on hover).</p>"
        f'<form class="filters" aria-label="filter results" onsubmit="return false">{"".join(selects)}'
        '<button type="button" id="reset-filters">show all</button></form>'
        '<p><output id="shown" aria-live="polite"></output></p>'
        '<div class="scroll"><table id="results-table" aria-label="results, one row per evaluation">'
        f"<thead><tr>{''.join(heads)}</tr></thead><tbody>{''.join(body)}</tbody></table></div></section>"
    )


def strip_anchor(dataset: str, attack: str, eps: str, source: str, goal: str, area: str) -> str:
    """The page anchor of a craft's image strip (an untargeted L∞ craft's keeps its old anchor)."""
    tail = ("" if goal == "untargeted" else f"-{slug(goal)}") + (f"-area{area}" if area else "")
    return f"strip-{slug(dataset)}-{slug(attack)}-{eps}-{slug(source)}{tail}"


StripKey = tuple[str, str, str, str, str, str]
"""(dataset, attack, eps, source victim, goal, patch area or "") of a query-side craft, as shown."""


def strip_key(row: Any) -> StripKey:
    """The :data:`StripKey` of a results row (a namedtuple of ``itertuples`` or a Series)."""
    area = row.patch_area
    return (
        str(row.dataset),
        str(row.attack),
        f"{float(row.eps):g}",
        str(row.source_victim),
        str(row.goal),
        "" if pd.isna(area) else f"{float(area):g}",
    )


def _strips_section(frame: pd.DataFrame, figures: set[str]) -> tuple[str, dict[StripKey, str]]:
    """The image strip of each undefended query-side craft the plots folder holds, and the page
    anchor of each strip shown, by :data:`StripKey`."""
    white = frame[(frame["threat"] == "none") & (frame["setting"] == "whitebox") & (frame["side"] == "query")]
    found: dict[StripKey, str] = {}
    groups: dict[tuple[str, ...], list[str]] = {}
    columns = ["dataset", "attack", "eps", "source_victim", "goal", "patch_area"]
    for r in white.drop_duplicates(columns).itertuples():
        key = strip_key(r)
        dataset, attack, eps, source, goal, area = key
        name = "plots/" + strip_file(dataset, attack, r.eps, source, goal, r.patch_area)
        if name not in figures:
            continue
        found[key] = anchor = strip_anchor(*key)
        what = "".join(
            [f" / {goal}" if goal != "untargeted" else "", f" / patch area {area}" if area else ""]
        )
        ranks = (
            "the chosen candidates with their rank before and after, and the top-5 after the attack"
            if goal != "untargeted"
            else "and the top-5 gallery before and after the attack"
        )
        alt = f"{dataset} / {attack} eps {eps}{what}, white-box on {source}: example queries, perturbations, {ranks}"
        groups.setdefault((dataset, attack, eps, what), []).append(
            f'<details class="strip" id="{_e(anchor)}"><summary>crafted on {_e(source)}</summary>'
            f'<img src="{_e(name)}" alt="{_e(alt)}"></details>'
        )
    if not groups:
        return "", found
    parts = [
        f'<h3>{_e(d)} / {_e(a)} / eps {_e(e)}{_e(what)}</h3><div class="strips">{"".join(items)}</div>'
        for (d, a, e, what), items in sorted(groups.items())
    ]
    return (
        '<section id="strips"><h2>Image strips</h2><p class="note">Per attack and source victim: a few '
        "queries, their amplified perturbation, and the white-box top-5 before and after (green frame: "
        "same identity as the query, red: another); a targeted or demote craft shows its chosen "
        "candidates (blue frame) with their rank before and after in place of the top-5 before. "
        "Open one to see it.</p>" + "".join(parts) + "</section>",
        found,
    )


def _plots_section(figures: Sequence[str], used: set[str]) -> str:
    rest = [f for f in figures if f not in used and f.endswith(".png")]
    if not rest:
        return ""
    items = "".join(
        f'<figure><img src="{_e(f)}" alt="{_e(Path(f).stem.replace("_", " "))}"><figcaption>{_e(f)}</figcaption></figure>'
        for f in rest
    )
    return f'<section id="plots"><h2>Plots</h2>{items}</section>'


def _disagreements_section(rows: Sequence[Mapping[str, str]]) -> str:
    if not rows:
        return ""
    head = ["cell", "field", "kept store", "kept value", "other store", "other value"]
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{_e(v)}</td>"
            for v in (
                f"{r.get('dataset', '')} | {r.get('attack', '')} | eps {r.get('eps', '')} | "
                f"{r.get('source_victim', '')} -> {r.get('target_victim') or '(craft)'}",
                r.get("field", ""),
                r.get("kept_store", ""),
                r.get("kept_value", ""),
                r.get("other_store", ""),
                r.get("other_value", ""),
            )
        )
        + "</tr>"
        for r in rows
    )
    cells = "".join(f'<th scope="col">{h}</th>' for h in head)
    return (
        f'<section id="disagreements" class="warn"><h2>{len(rows)} disagreement(s) between merged stores</h2>'
        "<p>The stores hold these results differently; the first store's value is the one shown below "
        "(also in disagreements.csv).</p>"
        f'<div class="scroll"><table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table></div></section>'
    )


def _disagreement_rows(disagreements: Any) -> list[dict[str, str]]:
    """Disagreement objects, or the text of a disagreements.csv, as dicts of strings."""
    if disagreements is None:
        return []
    if isinstance(disagreements, str):
        return [dict(r) for r in csv.DictReader(io.StringIO(disagreements))]
    from dataclasses import asdict

    return [{k: str(v) for k, v in asdict(d).items()} for d in disagreements]


def _whitebox_rows(frame: pd.DataFrame) -> pd.DataFrame:
    white = undefended(frame)
    return white[white["setting"] == "whitebox"]
