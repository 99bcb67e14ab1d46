"""The steps of a run, in dependency order: train missing victims -> clean features -> fits -> cells.

Each step sends its tasks through a backend and writes every finished record to the store as it
arrives (only this driver writes the store); a task that fails is recorded as a failure of its own
unit, and the units that depended on it are dropped from the later steps with that reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advbench import attacks, victims
from advbench.api import ImageSplit
from advbench.backends import Backend, TaskFailed
from advbench.cell import compute_cell
from advbench.claims import Claims
from advbench.clean import CleanSet, CleanVictim, compute_clean
from advbench.config import RunConfig
from advbench.context import TaskContext
from advbench.data.catalog import DatasetCatalog
from advbench.io import verified
from advbench.plan import Cell, FitTask, Plan
from advbench.records import CraftRecord, EvalRecord, FailedRecord, FitRecord, Record, RunSummary
from advbench.store import ResultStore
from advbench.victims import VictimRef

Log = Callable[[str], None]


# Task bodies: module-level, so that Ray can ship them by reference.
def _train(ctx: TaskContext, ref: VictimRef, split: ImageSplit) -> dict[str, float]:
    return victims.train(ref, split, registry=ctx.registry, device=ctx.device, progress=ctx.progress)


def _clean(
    ctx: TaskContext, ref: VictimRef, query: ImageSplit, gallery: ImageSplit, cfg: RunConfig
) -> CleanVictim:
    return compute_clean(
        ref, query, gallery, ctx, batch_size=2 * cfg.batch_size, protocol=cfg.protocol, seed=cfg.seed
    )


def _fit(ctx: TaskContext, task: FitTask, train: ImageSplit) -> FitRecord:
    return attacks.fit(task, train, ctx)


def _cell(
    ctx: TaskContext,
    cell: Cell,
    clean: CleanSet,
    train: ImageSplit | None,
    fit_seconds: float,
    detect_train: ImageSplit | None,
) -> list[Record]:
    return compute_cell(cell, clean, train, ctx, fit_seconds=fit_seconds, detect_train=detect_train)


def _needs_attack(cell: Cell) -> bool:
    """Whether the cell runs its attack: to craft, or to attack the train images of its detection."""
    return not cell.crafted or cell.detect is not None


def pending(plan: Plan, store: ResultStore, *, remove: bool = True) -> Plan:
    """The part of ``plan`` still to do: evaluations and detections not stored, crafts whose
    queries are not kept. Damaged stored queries are reported and removed (``remove=False``, as
    in a dry run: reported and kept)."""
    cells = []
    for cell in plan.cells:
        evals = tuple(e for e in cell.evals if not store.is_done(e.key))
        detect = cell.detect if cell.detect is not None and not store.is_done(cell.detect.key) else None
        if not evals and detect is None:
            continue
        record = store.get(cell.craft.key)
        crafted = isinstance(record, CraftRecord) and verified(record.adv_file, remove=remove)
        cells.append(Cell(cell.craft, evals, crafted, detect))
    fits = {c.craft.fit.key: c.craft.fit for c in cells if c.craft.fit is not None and _needs_attack(c)}
    return Plan(fits=list(fits.values()), cells=cells)


class Steps:
    """The steps of a pending plan through a backend, writing records to the store as they arrive."""

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
        self.cache_claims = Claims(Path(config.cache_dir) / "locks", log)  # victims and fits: per cache
        self.out_claims = Claims(store.root / "locks", log)  # cells: per results store

    def fail(self, label: str, key: str, message: str, unit: str) -> None:
        self.store.put(FailedRecord(key=f"{key}.failed", label=label, error=message, failed=unit))  # type: ignore[arg-type]
        self.summary.failed.append((label, message))
        self.log(f"FAILED {label}: {message}")

    def train(self, plan: Plan) -> Plan:
        """Train the victims the plan needs that have no checkpoint; drop the cells of any that fail.

        A victim another run is training (same cache) is waited for, not trained twice.
        """
        todo = [r for r in plan.victims() if r.origin == "train" and not verified(r.checkpoint)]
        lost = set()
        for ref, out in self.cache_claims.run(
            todo,
            name=lambda r: f"victim-{r.weights_id}",
            label=lambda r: f"victim {r.label}",
            work=lambda refs: self.backend.map(
                _train, [(r, self.catalog.split(r.dataset, "train")) for r in refs]
            ),
            refresh=lambda r: None if verified(r.checkpoint) else r,
        ):
            if isinstance(out, TaskFailed):
                self.fail(f"{ref.dataset}/{ref.name}", ref.weights_id, out.message, "train")
                lost.add(ref)
        return self._without(plan, lost, "its victim could not be trained")

    def _without(self, plan: Plan, lost: set[VictimRef], why: str) -> Plan:
        if not lost:
            return plan
        cells = []
        for cell in plan.cells:
            fit_lost = cell.craft.fit is not None and cell.craft.fit.source in lost and _needs_attack(cell)
            if cell.craft.source in lost or fit_lost:
                self.fail(cell.craft.label, cell.craft.key, why, "craft")
                continue
            evals = tuple(e for e in cell.evals if e.target not in lost)
            if evals or cell.detect is not None:
                cells.append(Cell(cell.craft, evals, cell.crafted, cell.detect))
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
        sets = {
            ds: CleanSet(ds, self.catalog.split(ds, "query"), gallery=self.catalog.split(ds, "gallery"))
            for ds in needs
        }
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
        """Run the fit steps (a fit another run holds is waited for, then reloaded from the cache);
        cells whose fit failed fail with its message."""
        failed: dict[str, str] = {}
        for task, out in self.cache_claims.run(
            plan.fits,
            name=lambda t: f"fit-{t.key}",
            label=lambda t: t.label,
            work=lambda tasks: self.backend.map(
                _fit, [(t, self.catalog.split(t.source.dataset, "train")) for t in tasks]
            ),
            refresh=lambda t: t,
        ):
            if isinstance(out, TaskFailed):
                self.fail(task.label, task.key, out.message, "fit")
                failed[task.key] = out.message
            elif not isinstance(self.store.get(task.key), FitRecord):  # keep the first, real, fit time
                self.store.put(out)
        cells = []
        for cell in plan.cells:
            fit = cell.craft.fit
            if fit is not None and fit.key in failed and _needs_attack(cell):
                self.fail(cell.craft.label, cell.craft.key, f"fit failed: {failed[fit.key]}", "craft")
            else:
                cells.append(cell)
        return Plan(fits=plan.fits, cells=cells)

    def _cell_call(self, cell: Cell, shared: dict[str, object]) -> tuple[Any, ...]:
        fit = cell.craft.fit
        train = self.catalog.split(fit.source.dataset, "train") if fit and _needs_attack(cell) else None
        record = self.store.get(fit.key) if fit else None
        seconds = record.fit_seconds if isinstance(record, FitRecord) else 0.0
        detect_train = self.catalog.split(cell.craft.dataset, "train") if cell.detect else None
        return (cell, shared[cell.craft.dataset], train, seconds, detect_train)

    def cells(self, plan: Plan, shared: dict[str, object]) -> None:
        """Run the cells; one another run holds (same output folder) is waited for, then only what it
        left undone is computed."""

        def left(cell: Cell) -> Cell | None:
            rest = pending(Plan(cells=[cell]), self.store).cells
            return rest[0] if rest else None

        for cell, out in self.out_claims.run(
            plan.cells,
            name=lambda c: f"cell-{c.craft.key}",
            label=lambda c: c.craft.label,
            work=lambda cells: self.backend.map(_cell, [self._cell_call(c, shared) for c in cells]),
            refresh=left,
        ):
            if isinstance(out, TaskFailed):
                self.fail(cell.craft.label, cell.craft.key, out.message, "craft")
                continue
            for record in out:
                self.store.put(record)
                if isinstance(record, FailedRecord):
                    self.summary.failed.append((record.label, record.error))
                    self.log(f"FAILED {record.label}: {record.error}")
                elif record.kind == "detect":
                    self.store.discard(f"{record.key}.failed")
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

    def run(self, plan: Plan) -> None:
        """The steps in dependency order, each logged with its wall time (the scaling note's figures)."""
        clock = time.perf_counter()

        def lap(step: str, count: int) -> None:
            nonlocal clock
            now = time.perf_counter()
            if count:
                self.log(f"{step}: {count} in {now - clock:.1f} s")
            clock = now

        lap("start", 0)
        trains = sum(r.origin == "train" and not verified(r.checkpoint) for r in plan.victims())
        plan = self.train(plan)
        lap("victims trained", trains)
        plan, shared = self.clean(plan)
        lap("clean feature sets", len(plan.victims()))
        plan = self.fits(plan)
        lap("attack fits", len(plan.fits))
        self.cells(plan, shared)
        lap("cells", len(plan.cells))
