"""Join the results stores of several machines into one store and leaderboard.

Records are matched by key. A key held by several stores with the same result is kept once; with
different results (payloads compared without provenance, timings and machine-local paths) the
first store's record is kept and the difference is reported as a :class:`Disagreement`, never
resolved silently. Machines that trained their own victims record the same leaderboard cell under
different keys (keys hash the weights): both records are kept, the first store's is the one the
leaderboard shows, and differing numbers are reported the same way. A failed unit that another
store finished is dropped.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from advbench.api import AdvbenchError
from advbench.io import atomic_write_text
from advbench.records import CraftRecord, EvalRecord, FailedRecord, Record, to_json
from advbench.store import ResultStore

# Fields that differ between machines without the result differing: who/where ran it, wall-clock
# timings, and paths and batch sizes local to the machine.
IGNORED = frozenset(
    {"provenance", "sec_per_image", "fit_seconds", "adv_file", "source_checkpoint", "batch_size"}
)
# Fields naming a record rather than holding its result: what two records of one cell may differ in.
IDENTITY = frozenset({"key", "craft_key", "source_weights_id", "target_weights_id"})


@dataclass(frozen=True)
class Disagreement:
    """One field of one record that two stores hold with different values."""

    key: str
    dataset: str
    attack: str
    eps: str
    source_victim: str
    target_victim: str
    field: str
    kept_store: str
    kept_value: str
    other_store: str
    other_value: str

    @property
    def cell(self) -> str:
        target = self.target_victim or "(craft)"
        return f"{self.dataset} | {self.attack} | eps {self.eps} | {self.source_victim} -> {target}"


@dataclass
class Merged:
    """The records kept (by key, first store first) and the disagreements met."""

    records: dict[str, Record] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    disagreements: list[Disagreement] = field(default_factory=list)


def store_root(path: Path) -> Path:
    """The ``.store`` folder of a leaderboard folder, or ``path`` itself when it is a store."""
    path = Path(path)
    if (path / ".store").is_dir():
        return path / ".store"
    if path.is_dir() and (path.name == ".store" or any(path.glob("*.json"))):
        return path
    raise AdvbenchError(
        f"{path} is neither a leaderboard folder with a .store nor a results store; pass a run's --out"
    )


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested JSON as {dotted.path: leaf}."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def compared(record: Record, ignored: frozenset[str] = IGNORED) -> dict[str, Any]:
    """The fields that hold the result, flattened: what two stores must agree on."""
    return _flat({k: v for k, v in to_json(record).items() if k not in ignored})


def _same(a: Any, b: Any) -> bool:
    """Equal values, a NaN (an undefined metric) being equal to a NaN."""
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def differences(a: Record, b: Record, ignored: frozenset[str] = IGNORED) -> list[tuple[str, Any, Any]]:
    """(field, value in a, value in b) for every result field where ``a`` and ``b`` differ."""
    left, right = compared(a, ignored), compared(b, ignored)
    keys = sorted(left.keys() | right.keys())
    return [(k, left.get(k), right.get(k)) for k in keys if not _same(left.get(k), right.get(k))]


def _cell(record: Record, crafts: dict[str, CraftRecord]) -> tuple[str, str, str, str, str]:
    """(dataset, attack, eps, source, target) of a record; blanks where the record has none."""
    if isinstance(record, CraftRecord):
        return record.dataset, record.attack, f"{record.eps:g}", record.source_victim, ""
    if isinstance(record, EvalRecord):
        craft = crafts.get(record.craft_key)
        if craft is None:
            return record.dataset, "", "", "", record.target_victim
        return craft.dataset, craft.attack, f"{craft.eps:g}", craft.source_victim, record.target_victim
    return "", getattr(record, "attack", ""), "", getattr(record, "source_victim", ""), ""


def _cell_id(record: Record, crafts: dict[str, CraftRecord]) -> tuple[Any, ...] | None:
    """The leaderboard row an evaluation fills (as :data:`advbench.leaderboard.KEYS`); None for
    other records and for an evaluation whose craft no store holds."""
    craft = crafts.get(record.craft_key) if isinstance(record, EvalRecord) else None
    if craft is None:
        return None
    params = json.dumps(craft.attack_params, sort_keys=True)
    source = (craft.dataset, craft.fit_dataset, craft.attack, params, craft.eps, craft.source_victim)
    assert isinstance(record, EvalRecord)
    threat = (record.defence, record.threat, craft.side, craft.goal, craft.budget, craft.patch_area)
    return (*source, record.target_victim, *threat, record.protocol)


def _cell_differences(
    a: EvalRecord, b: EvalRecord, crafts: dict[str, CraftRecord]
) -> list[tuple[str, Any, Any]]:
    """Result fields in which two evaluations of one cell, or their crafts, differ."""
    ignored = IGNORED | IDENTITY
    of_crafts = differences(crafts[a.craft_key], crafts[b.craft_key], ignored)
    return [*differences(a, b, ignored), *((f"craft.{k}", x, y) for k, x, y in of_crafts)]


def _note(
    merged: Merged,
    kept: Record,
    other: Record,
    store: str,
    diffs: list[tuple[str, Any, Any]],
    crafts: dict[str, CraftRecord],
) -> None:
    """Record each of ``diffs`` between ``kept`` and ``other`` (from ``store``) as a disagreement."""
    cell, kept_in = _cell(kept, crafts), merged.origin[kept.key]
    for path, mine, theirs in diffs:
        merged.disagreements.append(
            Disagreement(other.key, *cell, path, kept_in, str(mine), store, str(theirs))
        )


def merge_records(stores: Sequence[tuple[str, Sequence[Record]]]) -> Merged:
    """Join ``(name, records)`` stores in order: the first store holding a key (or a leaderboard
    cell) wins, and every result field another store holds differently is a disagreement."""
    merged = Merged()
    crafts: dict[str, CraftRecord] = {}
    for _, records in stores:
        crafts.update({r.key: r for r in records if isinstance(r, CraftRecord) and r.key not in crafts})
    first_of_cell: dict[tuple[Any, ...], Record] = {}
    for name, records in stores:
        for record in records:
            kept = merged.records.get(record.key)
            if kept is None:
                merged.records[record.key], merged.origin[record.key] = record, name
                cell_id = _cell_id(record, crafts)
                first = record if cell_id is None else first_of_cell.setdefault(cell_id, record)
                if merged.origin[first.key] != name:  # the same cell under another key
                    diffs = _cell_differences(first, record, crafts)  # type: ignore[arg-type]
                    _note(merged, first, record, name, diffs, crafts)
            elif not isinstance(record, FailedRecord):  # failure messages vary; they are not results
                _note(merged, kept, record, name, differences(kept, record), crafts)
    done = {key for key, r in merged.records.items() if not isinstance(r, FailedRecord)}
    for key in [k for k, r in merged.records.items() if isinstance(r, FailedRecord)]:
        if key.removesuffix(".failed") in done:
            del merged.records[key], merged.origin[key]
    return merged


def disagreement_lines(disagreements: Sequence[Disagreement]) -> list[str]:
    """One line per (record, other store): the cell, the stores and every value that differs."""
    grouped: dict[tuple[str, str], list[Disagreement]] = {}
    for d in disagreements:
        grouped.setdefault((d.key, d.other_store), []).append(d)
    lines = []
    for group in grouped.values():
        first = group[0]
        values = "; ".join(f"{d.field} {d.kept_value} vs {d.other_value}" for d in group)
        lines.append(
            f"disagreement: {first.cell}: {first.kept_store} vs {first.other_store}: {values} "
            f"(kept {first.kept_store}; record {first.key})"
        )
    return lines


def disagreements_csv(disagreements: Sequence[Disagreement]) -> str:
    """The disagreements as CSV, one row per differing field."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([f.name for f in fields(Disagreement)])
    writer.writerows(astuple(d) for d in disagreements)
    return buffer.getvalue()


def merge_stores(
    sources: Sequence[Path], out: Path, html: bool = True
) -> tuple[Merged, pd.DataFrame, list[str]]:
    """Merge the stores of ``sources`` (leaderboard folders or ``.store`` folders) into
    ``out/.store``, rebuild ``out``'s leaderboard and write ``out/disagreements.csv`` when any.

    Returns the merge, the merged leaderboard's results frame and one line per unreadable record.
    ``out`` may be one of the sources; a store of ``out`` that is not among them must be empty, so
    that no foreign record slips in. ``html``: also write ``out/index.html``, the disagreements at
    its top.
    """
    from advbench.leaderboard import publish

    out = Path(out)
    roots = [store_root(s) for s in sources]
    target = out / ".store"
    resolved = {r.resolve() for r in roots}
    if len(resolved) < len(roots):
        raise AdvbenchError("the same store is listed twice; list each machine's store once")
    if target.is_dir() and any(target.glob("*.json")) and target.resolve() not in resolved:
        raise AdvbenchError(
            f"{target} already holds records; merge into an empty folder or list {out} as a STORE"
        )
    stores = [ResultStore(r) for r in roots]
    merged = merge_records(
        [(str(s), list(store.records())) for s, store in zip(sources, stores, strict=True)]
    )
    problems = [line for store in stores for line in store.report()]
    sink = ResultStore(target)
    rank = {str(s): i for i, s in enumerate(sources)}
    # the leaderboard shows the newest record of a cell: write the first store's last
    for record in sorted(merged.records.values(), key=lambda r: -rank[merged.origin[r.key]]):
        sink.put(record)
    for stale in target.glob("*.failed.json"):  # out was a source: its failures others finished
        if stale.stem not in merged.records:
            sink.discard(stale.stem)
    report = out / "disagreements.csv"
    if merged.disagreements:
        atomic_write_text(report, disagreements_csv(merged.disagreements))
    else:
        report.unlink(missing_ok=True)
    frame, unreadable = publish(out, html=html)  # index.html lists disagreements.csv at the top
    return merged, frame, list(dict.fromkeys(problems + unreadable))
