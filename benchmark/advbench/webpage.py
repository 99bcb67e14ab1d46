"""OUT/index.html: the leaderboard as one self-contained web page.

The page is built from the same results frame as results.csv and summary.md (the summary's table
builders): a sortable, filterable results table (each row with the command that reproduces it and
its provenance), the white-box table and each transfer matrix as coloured grids, the clean-victim,
defence, targeted and detectability tables, and the image strips and plots of ``OUT/plots``, linked
relative to the page. Plain HTML, CSS and a small inline script: no request leaves the page, so it
works opened from disk on a machine without internet.

``python -m advbench.webpage DIR`` rebuilds ``DIR/index.html`` from ``DIR/results.csv`` alone.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from advbench.io import atomic_write_text
from advbench.leaderboard import COLUMNS, DECIMALS, KEYS, attack_label, slug, transfer_tables, undefended
from advbench.records import CraftRecord, EvalRecord, Record
from advbench.summary import (
    clean_table,
    defence_table,
    detect_table,
    targeted_tables,
    whitebox_intervals,
    with_interval,
)

PAGE = "index.html"
TEXT, LIGHT, STRONG = "#111111", (255, 255, 255), (231, 111, 81)
"""Dark text on a light background; grid cells go from white to a warm orange with the damage."""
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
DEFAULTS = {"side": "query", "goal": "untargeted", "budget": "linf", "threat": "none", "defence": "none"}
"""Values of columns a results.csv written before they existed lacks."""
PROVENANCE = ["advbench_version", "git_commit", "torch_version", "cuda", "device", "python"]

STYLE = """
:root { color-scheme: light; --text: #111; --muted: #4a4a4a; --line: #c9c9c9; --accent: #0b5cad; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--text); background: #fff; }
header, main, footer { max-width: 1400px; margin: 0 auto; padding: 0 16px; }
header { padding-top: 12px; }
h1 { font-size: 1.6rem; margin: 0.4em 0 0.2em; }
h2 { font-size: 1.25rem; margin: 1.6em 0 0.4em; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.2em 0 0.3em; }
p { margin: 0.4em 0; } .note { color: var(--muted); font-size: 0.9rem; }
a { color: var(--accent); }
nav { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 0.95rem; margin: 6px 0 4px; }
.scroll { overflow-x: auto; width: fit-content; max-width: 100%; border: 1px solid var(--line); border-radius: 4px; }
table { border-collapse: collapse; font-size: 0.88rem; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e3e3e3; text-align: left; vertical-align: top;
  white-space: nowrap; }
thead th { background: #f1f3f5; position: sticky; top: 0; z-index: 1; }
td.num, th.num { text-align: right; }
.ci { color: var(--muted); font-size: 0.85em; }
.params { display: block; color: var(--muted); font-size: 0.8em; white-space: normal; max-width: 16em; }
th button { font: inherit; font-weight: 600; color: var(--text); background: none; border: 0; padding: 0;
  cursor: pointer; text-align: inherit; }
th button::after { content: " \\2195"; color: #888; font-weight: 400; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; color: var(--text); }
th[aria-sort="descending"] button::after { content: " \\25BC"; color: var(--text); }
th button:focus-visible, select:focus-visible, summary:focus-visible, .copy:focus-visible {
  outline: 2px solid var(--accent); outline-offset: 2px; }
tr.whitebox td { background: #fff8e1; }
tr.whitebox td:first-child { box-shadow: inset 4px 0 0 #b26a00; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 0.8em; border: 1px solid; }
.badge.wb { color: #7a4700; border-color: #b26a00; background: #fff3cd; }
.badge.tr { color: #333; border-color: #999; background: #f4f4f4; }
.filters { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: end; margin: 8px 0; }
.filters label { display: flex; flex-direction: column; font-size: 0.8rem; color: var(--muted); }
.filters select { font: inherit; font-size: 0.9rem; color: var(--text); background: #fff;
  border: 1px solid #888; border-radius: 4px; padding: 3px 4px; max-width: 14em; }
.filters button { font: inherit; padding: 4px 10px; border: 1px solid #888; border-radius: 4px;
  background: #f6f6f6; color: var(--text); cursor: pointer; }
#shown { font-size: 0.9rem; color: var(--muted); }
details.row summary { cursor: pointer; color: var(--accent); font-size: 0.85rem; }
details.row[open] { white-space: normal; min-width: 22em; max-width: 40em; }
code.cmd { display: block; white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f8fa;
  border: 1px solid #d0d7de; border-radius: 4px; padding: 6px; margin: 4px 0; font-size: 0.8rem;
  user-select: all; }
.copy { font: inherit; font-size: 0.8rem; padding: 1px 8px; border: 1px solid #888; border-radius: 4px;
  background: #fff; color: var(--text); cursor: pointer; }
dl.prov { display: grid; grid-template-columns: max-content 1fr; gap: 0 10px; margin: 6px 0 0;
  font-size: 0.8rem; }
dl.prov dt { color: var(--muted); } dl.prov dd { margin: 0; overflow-wrap: anywhere; }
table.grid td.cell { text-align: right; min-width: 6.5em; color: #111; }
table.grid th[scope=row] { background: #f7f7f7; }
.legend { display: flex; align-items: center; gap: 8px; font-size: 0.85rem; color: var(--muted); margin: 6px 0; }
.legend .bar { width: 160px; height: 12px; border: 1px solid var(--line);
  background: linear-gradient(to right, rgb(255,255,255), rgb(231,111,81)); }
.warn { border: 2px solid #b00020; background: #fff5f5; border-radius: 6px; padding: 8px 12px; margin: 12px 0; }
.warn h2 { border: 0; margin-top: 0.2em; color: #8a0018; }
figure { margin: 10px 0; } figcaption { font-size: 0.85rem; color: var(--muted); }
img { max-width: 100%; height: auto; border: 1px solid var(--line); background: #fff; }
details.strip { margin: 4px 0; } details.strip summary { cursor: pointer; }
.strips { display: grid; gap: 4px; }
footer { margin-top: 2em; padding-bottom: 2em; }
@media (max-width: 600px) {
  body { font-size: 14px; } header, main, footer { padding: 0 8px; }
  h1 { font-size: 1.3rem; } th, td { padding: 3px 5px; }
  .filters label { flex: 1 1 40%; } .filters select { max-width: none; width: 100%; }
}
"""

SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("results-table");
  if (!table) return;
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
  function value(row, i, numeric) {
    var cell = row.cells[i];
    var raw = cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
    if (!numeric) return raw;
    var x = raw === "" ? NaN : Number(raw);
    return x;
  }
  function sortBy(i) {
    var th = heads[i], numeric = th.getAttribute("data-type") === "num";
    var current = th.getAttribute("aria-sort");
    var dir = current === "descending" ? "ascending" : current === "ascending" ? "descending"
      : (numeric ? "descending" : "ascending");
    heads.forEach(function (h) { if (h.hasAttribute("aria-sort")) h.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    var sorted = rows.slice().sort(function (a, b) {
      var x = value(a, i, numeric), y = value(b, i, numeric), c;
      if (numeric) {
        var nx = isNaN(x), ny = isNaN(y);
        c = nx && ny ? 0 : nx ? 2 : ny ? -2 : sign * (x - y);
        if (nx !== ny) return nx ? 1 : -1;
      } else {
        c = sign * collator.compare(x, y);
      }
      return c || (Number(a.getAttribute("data-i")) - Number(b.getAttribute("data-i")));
    });
    sorted.forEach(function (r) { body.appendChild(r); });
  }
  heads.forEach(function (th, i) {
    var button = th.querySelector("button");
    if (button) button.addEventListener("click", function () { sortBy(i); });
  });
  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  var shown = document.getElementById("shown");
  function filter() {
    var n = 0;
    rows.forEach(function (r) {
      var ok = selects.every(function (s) {
        return s.value === "" || r.getAttribute("data-" + s.getAttribute("data-filter")) === s.value;
      });
      r.hidden = !ok;
      if (ok) n += 1;
    });
    shown.textContent = n + " of " + rows.length + " rows shown";
  }
  selects.forEach(function (s) { s.addEventListener("change", filter); });
  var reset = document.getElementById("reset-filters");
  if (reset) reset.addEventListener("click", function () {
    selects.forEach(function (s) { s.value = ""; });
    filter();
  });
  function openTarget() {
    var target = location.hash ? document.getElementById(location.hash.slice(1)) : null;
    if (target && target.tagName === "DETAILS") { target.open = true; target.scrollIntoView(); }
  }
  window.addEventListener("hashchange", openTarget);
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.copy") : null;
    if (!button) return;
    var code = document.getElementById(button.getAttribute("data-for"));
    var text = code.textContent;
    function done() { button.textContent = "copied"; setTimeout(function () { button.textContent = "copy"; }, 1500); }
    function fallback() {
      var range = document.createRange(); range.selectNodeContents(code);
      var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
      try { if (document.execCommand("copy")) done(); } catch (e) { /* selected: copy by hand */ }
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  });
  filter();
  openTarget();
})();
"""


def _e(value: Any) -> str:
    """``value`` as escaped HTML text (blank for NaN / None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return escape(str(value), quote=True)


def _num(value: Any, digits: int = 2) -> str:
    """A number as the CSV shows it (``digits`` decimals; blank for NaN)."""
    if value is None or pd.isna(value):
        return ""
    if isinstance(value, bool | str):
        return str(value)
    return f"{float(value):.{digits}f}"


def _cell_text(value: Any) -> str:
    """A summary-table value as summary.md shows it."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def complete(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every :data:`advbench.leaderboard.COLUMNS` column (a results.csv of an older
    version lacks the threat-model and target columns: defaults and NaN)."""
    missing = {c: DEFAULTS.get(c, float("nan")) for c in COLUMNS if c not in frame.columns}
    frame = frame.assign(**missing) if missing else frame.copy()
    for column, default in DEFAULTS.items():
        frame[column] = frame[column].fillna(default).astype(str)
    return frame.reset_index(drop=True)


def colour(share: float) -> str:
    """Background of a grid cell whose share of clean mAP destroyed is ``share`` (0..1)."""
    t = 0.0 if pd.isna(share) else min(max(float(share), 0.0), 1.0)
    r, g, b = (round(lo + t * (hi - lo)) for lo, hi in zip(LIGHT, STRONG, strict=True))
    return f"rgb({r},{g},{b})"


def contrast(background: tuple[int, int, int], text: tuple[int, int, int] = (17, 17, 17)) -> float:
    """WCAG contrast ratio of two sRGB colours (4.5 or more: legible body text)."""

    def luminance(rgb: tuple[int, int, int]) -> float:
        lin = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(background), luminance(text)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


EVAL_KEYS = {"target_victim", "defence", "threat", "protocol"}
"""The :data:`advbench.leaderboard.KEYS` an evaluation holds; its craft holds the others."""


def _key_part(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value), 2)  # as results.csv rounds floats
    return str(value)


def _row_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(_key_part(row.get(k)) for k in KEYS)


def _record_index(records: Iterable[Record]) -> dict[tuple[Any, ...], tuple[CraftRecord, EvalRecord]]:
    """(craft, evaluation) of each results row, by its :data:`advbench.leaderboard.KEYS` (later wins)."""
    records = list(records)
    crafts = {r.key: r for r in records if isinstance(r, CraftRecord)}
    out = {}
    for ev in records:
        craft = crafts.get(ev.craft_key) if isinstance(ev, EvalRecord) else None
        if craft is None:
            continue
        assert isinstance(ev, EvalRecord)
        row = {k: getattr(ev if k in EVAL_KEYS else craft, k, None) for k in KEYS}
        row["attack_params"] = json.dumps(craft.attack_params, sort_keys=True, separators=(",", ":"))
        out[_row_key(row)] = (craft, ev)
    return out


def _yaml_scalar(value: Any) -> str:
    """``value`` written so that the CLI's YAML parsing of ``KEY=VALUE`` reads it back unchanged."""
    if isinstance(value, str):
        try:
            same = yaml.safe_load(value) == value
        except yaml.YAMLError:
            same = False
        return value if same and value else json.dumps(value)
    return json.dumps(value)


def reproduce_command(row: Mapping[str, Any], craft: CraftRecord | None = None) -> str:
    """The ``advbench run`` that computes ``row`` (a results row): its dataset, attack with every
    parameter, budget, source and target victims, defence and threat model, fit dataset, protocol,
    seed and quantization. ``craft`` (the row's record, when known) adds the defence parameters and
    batch size, which results.csv does not hold. Victim weights, dataset parameters and the data
    root are the run's own (a real dataset also needs ``--data-root``)."""
    attack, source, target = str(row["attack"]), str(row["source_victim"]), str(row["target_victim"])
    victims = source if source == target else f"{source},{target}"
    parts = ["advbench", "run", "--datasets", str(row["dataset"]), "--attacks", attack]
    area = row.get("patch_area")
    if str(row.get("budget", "linf")) == "patch" and area is not None and not pd.isna(area):
        parts += ["--budget", "patch", "--patch-area", f"{float(area):g}"]
    else:
        parts += ["--eps", f"{float(row['eps']):g}"]
    parts += ["--victims", victims]
    if str(row.get("defence", "none")) != "none":
        parts += ["--defences", str(row["defence"])]
        for key, value in sorted((craft.defence_params if craft and craft.defence != "none" else {}).items()):
            parts += ["--defence-param", f"{row['defence']}.{key}={_yaml_scalar(value)}"]
    if str(row.get("side", "query")) != "query":
        parts += ["--side", str(row["side"])]
    goal = str(row.get("goal", "untargeted"))
    if goal != "untargeted":
        parts += ["--goal", goal]
        n = row.get("n_targets")
        if n is not None and not pd.isna(n):
            parts += ["--targets-per-query", f"{int(n)}"]
    if str(row.get("fit_dataset", row["dataset"])) not in ("", str(row["dataset"]), "nan"):
        parts += ["--fit-on", str(row["fit_dataset"])]
    if str(row.get("protocol", "market")) != "market":
        parts += ["--protocol", str(row["protocol"])]
    seed = row.get("seed")
    if seed is not None and not pd.isna(seed) and int(seed) != 0:
        parts += ["--seed", str(int(seed))]
    if str(row.get("quantized", True)) in ("False", "false", "0"):
        parts.append("--no-quantize")
    if craft is not None and craft.batch_size != 64:
        parts += ["--batch-size", str(craft.batch_size)]
    params = row.get("attack_params")
    if isinstance(params, str) and params:
        for key, value in sorted(json.loads(params).items()):
            parts += ["--attack-param", f"{attack}.{key}={_yaml_scalar(value)}"]
    return shlex.join(parts)


def _provenance(row: Mapping[str, Any], pair: tuple[CraftRecord, EvalRecord] | None) -> list[tuple[str, str]]:
    """(what, value) lines of a row's provenance: the records' when known, else results.csv's."""
    if pair is None:
        return [
            ("advbench_version", str(row.get("advbench_version", ""))),
            ("device", str(row.get("device", ""))),
            ("commit, torch, python", "not in results.csv (rebuild from the store for them)"),
        ]
    craft, ev = pair
    lines = []
    for name in PROVENANCE:
        crafted, evaluated = craft.provenance.get(name), ev.provenance.get(name)
        if crafted == evaluated or evaluated is None:
            lines.append((name, "" if crafted is None else str(crafted)))
        else:
            lines.append((name, f"{crafted} (craft), {evaluated} (evaluation)"))
    return lines


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
        strip = (
            f'<p><a href="#strip-{_e(slug(str(row["dataset"])))}-{_e(slug(str(row["attack"])))}-{_e(eps)}-'
            f'{_e(slug(str(row["source_victim"])))}">image strip of this craft</a></p>'
            if row.get("_strip")
            else ""
        )
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


def _strips_section(frame: pd.DataFrame, figures: set[str]) -> tuple[str, set[tuple[str, str, str, str]]]:
    """The image strip of each (dataset, attack, eps, source) the plots folder holds."""
    white = undefended(frame)
    white = white[white["setting"] == "whitebox"]
    found: set[tuple[str, str, str, str]] = set()
    groups: dict[tuple[str, str, str], list[str]] = {}
    for r in white.drop_duplicates(["dataset", "attack", "eps", "source_victim"]).itertuples():
        eps = f"{float(r.eps):g}"
        name = f"plots/strip_{slug(str(r.dataset))}_{slug(str(r.attack))}_eps{eps}_{slug(str(r.source_victim))}.jpg"
        if name not in figures:
            continue
        key = (str(r.dataset), str(r.attack), eps, str(r.source_victim))
        found.add(key)
        anchor = f"strip-{slug(key[0])}-{slug(key[1])}-{eps}-{slug(key[3])}"
        alt = (
            f"{key[0]} / {key[1]} eps {eps}, white-box on {key[3]}: example queries, perturbations, "
            "and the top-5 gallery before and after the attack"
        )
        groups.setdefault(key[:3], []).append(
            f'<details class="strip" id="{_e(anchor)}"><summary>crafted on {_e(key[3])}</summary>'
            f'<img src="{_e(name)}" alt="{_e(alt)}"></details>'
        )
    if not groups:
        return "", found
    parts = [
        f'<h3>{_e(d)} / {_e(a)} / eps {_e(e)}</h3><div class="strips">{"".join(items)}</div>'
        for (d, a, e), items in sorted(groups.items())
    ]
    return (
        '<section id="strips"><h2>Image strips</h2><p class="note">Per attack and source victim: a few '
        "queries, their amplified perturbation, and the white-box top-5 before and after (green frame: "
        "same identity as the query, red: another). Open one to see it.</p>" + "".join(parts) + "</section>",
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
    frame["_strip"] = [
        (str(r.dataset), str(r.attack), f"{float(r.eps):g}", str(r.source_victim)) in found
        and r.setting == "whitebox"
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
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p class=note>{len(frame)} rows · datasets {_e(datasets)} · "
        f'advbench {_e(versions)} · the same numbers as <a href="results.csv">results.csv</a> and '
        f'<a href="summary.md">summary.md</a></p><nav aria-label="sections">{nav}</nav></header><main>'
        + _disagreements_section(rows)
        + "".join(html for _, _, html in sections)
        + "</main><footer><p class=note>Commands reproduce a row with the run's defaults for victim weights "
        "(cached or trained), dataset parameters and data root; real datasets also need "
        "<code>--data-root</code>. mAP, rank-k in percent, Market-1501 protocol unless the row says "
        f"otherwise.</p></footer><script>{SCRIPT}</script></body></html>\n"
    )


def _whitebox_rows(frame: pd.DataFrame) -> pd.DataFrame:
    white = undefended(frame)
    return white[white["setting"] == "whitebox"]


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


if __name__ == "__main__":
    sys.exit(main())
