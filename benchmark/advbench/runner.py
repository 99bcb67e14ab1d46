"""Orchestrate a run: resolve victims -> plan -> skip what is done -> train -> clean -> fits -> cells.

Every step but planning runs through a backend (:mod:`advbench.backends`), in this process or on
Ray; only this driver writes the results store, one record per finished unit, as results arrive.
A rerun skips finished work without loading an image; a task that raises fails its own unit only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from advbench import attacks, victims
from advbench.api import AdvbenchError, ImageSplit
from advbench.backends import Backend, TaskFailed, make_backend
from advbench.cell import compute_cell
from advbench.clean import CleanSet, CleanVictim, compute_clean
from advbench.config import PROTOCOLS, RunConfig
from advbench.context import TaskContext, WorkerEnv
from advbench.data.catalog import DatasetCatalog
from advbench.plan import Cell, Plan, attack_choices, build_plan
from advbench.plugins import Registry
from advbench.records import CraftRecord, EvalRecord, FailedRecord, FitRecord, Record
from advbench.store import ResultStore
from advbench.utils import resolve_device
from advbench.victims import VictimRef

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class RunSummary:
    """What a run did: the records of its grid, and what was computed, skipped or failed."""

    crafts: list[CraftRecord] = field(default_factory=list)
    evals: list[EvalRecord] = field(default_factory=list)
    done: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def records(self) -> list[Record]:
        return [*self.crafts, *self.evals]


# ------------------------------------------------------------------------------ task bodies
def _train(ctx: TaskContext, ref: VictimRef, split: ImageSplit) -> dict[str, float]:
    return victims.train(ref, split, registry=ctx.registry, device=ctx.device, progress=ctx.progress)


def _clean(
    ctx: TaskContext, ref: VictimRef, query: ImageSplit, gallery: ImageSplit, cfg: RunConfig
) -> CleanVictim:
    return compute_clean(
        ref, query, gallery, ctx, batch_size=2 * cfg.batch_size, protocol=cfg.protocol, seed=cfg.seed
    )


# ---------------------------------------------------------------------------------- planning
def _resolve_victims(
    config: RunConfig,
    registry: Registry,
    catalog: DatasetCatalog,
    dataset: str,
    summary: RunSummary,
    log: Log,
) -> list[VictimRef]:
    """Refs of the run's victims on ``dataset``; with ``all``, non-default victims without weights
    are skipped with a note, and a victim with no way to get weights is a failure of its own."""
    data, size, embedded = catalog.get(dataset), catalog.input_size(dataset), catalog.embedded(dataset)
    wants_all = "all" in config.victims.split(",")
    refs = []
    for name in registry.select("victim", config.victims):
        optional = wants_all and not victims.is_default(name, registry)
        try:
            ref = victims.resolve(name, data, size, config, registry, embedded)
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
    config: RunConfig, registry: Registry, catalog: DatasetCatalog, summary: RunSummary, log: Log = _stderr
) -> Plan:
    """Resolve every dataset's victims (and the ``--fit-on`` dataset's) and build the plan."""
    by_dataset = {
        ds: _resolve_victims(config, registry, catalog, ds, summary, log)
        for ds in registry.select("dataset", config.datasets)
    }
    fit_refs: dict[str, VictimRef] = {}
    if config.fit_on:
        fit = config.fit_on
        for name in dict.fromkeys(r.name for refs in by_dataset.values() for r in refs):
            try:
                fit_refs[name] = victims.resolve(
                    name, catalog.get(fit), catalog.input_size(fit), config, registry, catalog.embedded(fit)
                )
            except AdvbenchError as exc:
                summary.failed.append((f"{fit}/{name}", str(exc)))
    return build_plan(config, attack_choices(config, registry), by_dataset, fit_refs)


def pending(plan: Plan, store: ResultStore) -> Plan:
    """The part of ``plan`` still to do: evaluations not stored, crafts whose queries are not kept."""
    cells = []
    for cell in plan.cells:
        evals = tuple(e for e in cell.evals if not store.is_done(e.key))
        if not evals:
            continue
        record = store.get(cell.craft.key)
        crafted = isinstance(record, CraftRecord) and Path(record.adv_file).is_file()
        cells.append(Cell(cell.craft, evals, crafted))
    fits = {c.craft.fit.key: c.craft.fit for c in cells if c.craft.fit is not None and not c.crafted}
    return Plan(fits=list(fits.values()), cells=cells)


# --------------------------------------------------------------------------------- execution
class _Execution:
    """One pass over a pending plan through a backend, writing records as they arrive."""

    def __init__(
        self,
        config: RunConfig,
        catalog: DatasetCatalog,
        backend: Backend,
        store: ResultStore,
        summary: RunSummary,
        log: Log,
    ) -> None:
        self.config, self.catalog, self.backend = config, catalog, backend
        self.store, self.summary, self.log = store, summary, log

    def fail(self, label: str, key: str, message: str, unit: str) -> None:
        self.store.put(FailedRecord(key=f"{key}.failed", label=label, error=message, failed=unit))  # type: ignore[arg-type]
        self.summary.failed.append((label, message))
        self.log(f"FAILED {label}: {message}")

    def train(self, plan: Plan) -> Plan:
        """Train the victims the plan needs that have no checkpoint; drop the cells of any that fail."""
        todo = [r for r in plan.victims() if r.origin == "train" and not Path(r.checkpoint).exists()]
        calls = [(ref, self.catalog.split(ref.dataset, "train")) for ref in todo]
        lost = set()
        for i, out in self.backend.map(_train, calls):
            if isinstance(out, TaskFailed):
                self.fail(f"{todo[i].dataset}/{todo[i].name}", todo[i].weights_id, out.message, "train")
                lost.add(todo[i])
        return self._without(plan, lost, "its victim could not be trained")

    def _without(self, plan: Plan, lost: set[VictimRef], why: str) -> Plan:
        if not lost:
            return plan
        cells = []
        for cell in plan.cells:
            fit_lost = cell.craft.fit is not None and cell.craft.fit.source in lost and not cell.crafted
            if cell.craft.source in lost or fit_lost:
                self.fail(cell.craft.label, cell.craft.key, why, "craft")
                continue
            evals = tuple(e for e in cell.evals if e.target not in lost)
            if evals:
                cells.append(Cell(cell.craft, evals, cell.crafted))
        return Plan(fits=[f for f in plan.fits if f.source not in lost], cells=cells)

    def clean(self, plan: Plan) -> tuple[Plan, dict[str, object]]:
        """Every needed victim's clean features per dataset, shared once per dataset."""
        needs: dict[str, dict[VictimRef, None]] = {}
        for cell in plan.cells:
            refs = needs.setdefault(cell.craft.dataset, {})
            refs[cell.craft.source] = None
            refs.update(dict.fromkeys(e.target for e in cell.evals))
        calls, owners = [], []
        for dataset, refs in needs.items():
            query, gallery = self.catalog.split(dataset, "query"), self.catalog.split(dataset, "gallery")
            for ref in refs:
                calls.append((ref, query, gallery, self.config))
                owners.append(ref)
        sets = {ds: CleanSet(ds, self.catalog.split(ds, "query")) for ds in needs}
        lost = set()
        for i, out in self.backend.map(_clean, calls):
            ref = owners[i]
            if isinstance(out, TaskFailed):
                self.fail(f"{ref.dataset}/{ref.name} clean features", ref.weights_id, out.message, "clean")
                lost.add(ref)
                continue
            sets[ref.dataset].victims[ref.name] = out
            self.log(
                f"{ref.dataset} {ref.name}: clean mAP {100 * out.scores.mAP:.1f}, "
                f"rank-1 {100 * out.scores.rank(1):.1f}"
            )
        shared = {ds: self.backend.share(s) for ds, s in sets.items()}
        return self._without(plan, lost, "clean features of its victim failed"), shared

    def fits(self, plan: Plan) -> Plan:
        """Run the fit steps; cells whose fit failed fail with its message."""
        calls = [(task, self.catalog.split(task.source.dataset, "train")) for task in plan.fits]
        failed: dict[str, str] = {}
        for i, out in self.backend.map(attacks_fit, calls):
            task = plan.fits[i]
            if isinstance(out, TaskFailed):
                self.fail(task.label, task.key, out.message, "fit")
                failed[task.key] = out.message
            elif not isinstance(self.store.get(task.key), FitRecord):  # keep the first, real, fit time
                self.store.put(out)
        cells = []
        for cell in plan.cells:
            fit = cell.craft.fit
            if fit is not None and fit.key in failed and not cell.crafted:
                self.fail(cell.craft.label, cell.craft.key, f"fit failed: {failed[fit.key]}", "craft")
            else:
                cells.append(cell)
        return Plan(fits=plan.fits, cells=cells)

    def cells(self, plan: Plan, shared: dict[str, object]) -> None:
        calls = []
        for cell in plan.cells:
            fit = cell.craft.fit
            train = self.catalog.split(fit.source.dataset, "train") if fit and not cell.crafted else None
            record = self.store.get(fit.key) if fit else None
            seconds = record.fit_seconds if isinstance(record, FitRecord) else 0.0
            calls.append((cell, shared[cell.craft.dataset], train, seconds))
        for i, out in self.backend.map(_cell, calls):
            cell = plan.cells[i]
            if isinstance(out, TaskFailed):
                self.fail(cell.craft.label, cell.craft.key, out.message, "craft")
                continue
            for record in out:
                self.store.put(record)
            self.store.discard(f"{cell.craft.key}.failed")
            self.summary.done += 1
            self._report(cell, out)

    def _report(self, cell: Cell, records: list[Record]) -> None:
        white = next(
            (r for r in records if isinstance(r, EvalRecord) and r.target_victim == cell.craft.source.name),
            None,
        )
        craft = next((r for r in records if isinstance(r, CraftRecord)), None)
        parts = [f"done {cell.craft.label}:"]
        if white is not None:
            parts.append(f"white-box mAP {white.clean.mAP:.1f} -> {white.adv.mAP:.1f},")
        if craft is not None:
            parts.append(f"SSIM {craft.perceptual['ssim']:.3f}, {craft.sec_per_image:.4f} s/image")
        else:
            parts.append(f"{len(cell.evals)} new evaluation(s) of stored queries")
        self.log(" ".join(parts))


def attacks_fit(ctx: TaskContext, task, train: ImageSplit) -> FitRecord:
    return attacks.fit(task, train, ctx)


def _cell(
    ctx: TaskContext, cell: Cell, clean: CleanSet, train: ImageSplit | None, fit_seconds: float
) -> list[Record]:
    return compute_cell(cell, clean, train, ctx, fit_seconds=fit_seconds)


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


def worker_env(config: RunConfig) -> WorkerEnv:
    threads = max(1, config.threads) if config.backend == "ray" else config.threads
    progress = config.progress and config.backend == "local"
    return WorkerEnv(Path(config.cache_dir), config.device, threads, config.amp, progress)


def run(config: RunConfig, registry: Registry, log: Log = _stderr) -> RunSummary:
    """Run ``config``'s grid; records of every cell of the grid (new or stored) are in the summary."""
    if config.protocol not in PROTOCOLS:
        raise AdvbenchError(f"unknown evaluation protocol {config.protocol!r}; choose {', '.join(PROTOCOLS)}")
    if config.backend == "local":
        resolve_device(config.device)  # a bad --device fails before any work
    summary = RunSummary()
    store = ResultStore(Path(config.out) / ".store")
    catalog = DatasetCatalog(config, registry)
    plan = make_plan(config, registry, catalog, summary, log)
    todo = pending(plan, store)
    summary.skipped = len(plan.cells) - len(todo.cells)
    log(f"{len(plan.cells)} cells: {summary.skipped} already done, {len(todo.cells)} to run")
    if todo.cells:
        backend = make_backend(config, registry, worker_env(config))
        try:
            run_plan(todo, _Execution(config, catalog, backend, store, summary, log))
        finally:
            backend.close()
    _collect(plan, store, summary)
    return summary


def run_plan(plan: Plan, execution: _Execution) -> None:
    plan = execution.train(plan)
    plan, shared = execution.clean(plan)
    plan = execution.fits(plan)
    execution.cells(plan, shared)
