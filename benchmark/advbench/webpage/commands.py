"""What reproduces a row and where it came from: the command line and the provenance."""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
import yaml

from advbench.records import CraftRecord, EvalRecord, Record
from advbench.tables import KEYS

PROVENANCE = ["advbench_version", "git_commit", "torch_version", "cuda", "device", "python"]


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
