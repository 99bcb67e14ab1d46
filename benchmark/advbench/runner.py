"""Orchestrate a run: resolve victims -> plan -> skip what is done -> train -> clean -> fits -> cells.

Every step but planning runs through a backend (:mod:`advbench.backends`), in this process or on
Ray; only this driver writes the results store, one record per finished unit, as results arrive.
A rerun skips finished work without loading an image; a task that raises fails its own unit only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from advbench import victims
from advbench.api import AdvbenchError
from advbench.backends import make_backend
from advbench.config import PROTOCOLS, RunConfig
from advbench.context import WorkerEnv
from advbench.data.catalog import DatasetCatalog
from advbench.io import clean_stale_temps
from advbench.plan import Plan, attack_choices, build_plan, defence_choices
from advbench.plugins import Registry
from advbench.records import CraftRecord, DetectRecord, EvalRecord, RunSummary
from advbench.steps import Steps, pending
from advbench.store import ResultStore
from advbench.utils import resolve_device
from advbench.victims import VictimRef

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- planning
def _resolve_victims(
    config: RunConfig,
    registry: Registry,
    catalog: DatasetCatalog,
    dataset: str,
    summary: RunSummary,
    log: Log,
    remove: bool = True,
) -> list[VictimRef]:
    """Refs of the run's victims on ``dataset``; with ``all``, non-default victims without weights
    are skipped with a note, and a victim with no way to get weights is a failure of its own."""
    data, size, embedded = catalog.get(dataset), catalog.input_size(dataset), catalog.embedded(dataset)
    wants_all = "all" in config.victims.split(",")
    refs = []
    for name in registry.select("victim", config.victims):
        optional = wants_all and not victims.is_default(name, registry)
        try:
            ref = victims.resolve(name, data, size, config, registry, embedded, remove=remove)
        except AdvbenchError as exc:
            if not optional:
                summary.failed.append((f"{dataset}/{name}", str(exc)))
                log(f"victim {name} unavailable on {dataset}: {exc}")
                continue
            ref = None
        if optional and (ref is None or ref.origin == "train"):
            log(
                f"note: victim {name} has no weights for {dataset} and is not a default victim; skipped "
                f"(add it with `advbench train --victim {name} --dataset {dataset}` or --victim-weights)"
            )
            continue
        refs.append(ref)
    return refs


def make_plan(
    config: RunConfig,
    registry: Registry,
    catalog: DatasetCatalog,
    summary: RunSummary,
    log: Log = _stderr,
    *,
    remove: bool = True,
) -> Plan:
    """Resolve every dataset's victims (and the ``--fit-on`` dataset's) and build the plan.

    A damaged cached checkpoint is reported and removed; with ``remove=False`` (a dry run) it is
    reported and kept.
    """
    by_dataset = {
        ds: _resolve_victims(config, registry, catalog, ds, summary, log, remove)
        for ds in registry.select("dataset", config.datasets)
    }
    fit_refs: dict[str, VictimRef] = {}
    if config.fit_on:
        fit = config.fit_on
        for name in dict.fromkeys(r.name for refs in by_dataset.values() for r in refs):
            try:
                fit_refs[name] = victims.resolve(
                    name,
                    catalog.get(fit),
                    catalog.input_size(fit),
                    config,
                    registry,
                    catalog.embedded(fit),
                    remove=remove,
                )
            except AdvbenchError as exc:
                summary.failed.append((f"{fit}/{name}", str(exc)))
    defences = defence_choices(config, registry)
    return build_plan(config, attack_choices(config, registry), by_dataset, fit_refs, defences)


def _collect(plan: Plan, store: ResultStore, summary: RunSummary) -> None:
    for cell in plan.cells:
        craft = store.get(cell.craft.key)
        if not isinstance(craft, CraftRecord):
            continue
        summary.crafts.append(craft)
        for ev in cell.evals:
            record = store.get(ev.key)
            if isinstance(record, EvalRecord):
                summary.evals.append(record)
        detect = store.get(cell.detect.key) if cell.detect else None
        if isinstance(detect, DetectRecord):
            summary.detects.append(detect)


def clean_leftovers(config: RunConfig) -> None:
    """Remove the temporary files a killed run left in the output folder, the store and the cache."""
    cache = Path(config.cache_dir)
    folders = [
        Path(config.out),
        Path(config.out) / ".store",
        *(cache / d for d in ("images", "features", "victims")),
    ]
    for parent in (cache / "attacks", cache / "adversarial"):
        folders += [p for p in parent.glob("*") if p.is_dir()]
    for folder in folders:
        if folder.is_dir():
            clean_stale_temps(folder, folder=True)


def worker_env(config: RunConfig) -> WorkerEnv:
    """What every task obeys. ``--threads`` defaults to torch's thread count in this process (the
    cores it sees) on both backends: CPU kernels round differently with other thread counts, and
    the backends must give the same numbers."""
    import torch

    threads = config.threads if config.threads > 0 else torch.get_num_threads()
    progress = config.progress and config.backend == "local"
    return WorkerEnv(Path(config.cache_dir), config.device, threads, config.amp, progress)


def run(config: RunConfig, registry: Registry, log: Log = _stderr) -> RunSummary:
    """Run ``config``'s grid; records of every cell of the grid (new or stored) are in the summary."""
    if config.protocol not in PROTOCOLS:
        raise AdvbenchError(f"unknown evaluation protocol {config.protocol!r}; choose {', '.join(PROTOCOLS)}")
    # a bad --device, or --backend ray without Ray, fails before any work
    if config.backend == "local":
        resolve_device(config.device)
    elif config.backend == "ray":
        from advbench.backends.ray import import_ray

        import_ray()
    for line in registry.problems_report():  # a broken plugin package is left out, and said so once
        log(line)
    summary = RunSummary()
    store = ResultStore(Path(config.out) / ".store")
    clean_leftovers(config)
    catalog = DatasetCatalog(config, registry)
    plan = make_plan(config, registry, catalog, summary, log)
    todo = pending(plan, store)
    for line in store.report():
        log(f"warning: {line}")
    summary.skipped = len(plan.cells) - len(todo.cells)
    log(f"{len(plan.cells)} cells: {summary.skipped} already done, {len(todo.cells)} to run")
    if todo.cells:
        backend = make_backend(config, registry, worker_env(config))
        try:
            Steps(config, catalog, backend, store, summary, log).run(todo)
        finally:
            backend.close()
    _collect(plan, store, summary)
    return summary
