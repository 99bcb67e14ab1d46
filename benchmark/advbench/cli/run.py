"""``advbench run``: the grid, its leaderboard files, and ``--dry-run`` (the plan, nothing computed)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advbench.cli.options import _config_from, common_options

if TYPE_CHECKING:
    from advbench.config import RunConfig
    from advbench.plugins import Registry


def add_parser(sub: Any) -> None:
    """The ``run`` subcommand's options."""
    run = sub.add_parser(
        "run", help="run the (dataset x attack x eps x source victim) grid and write leaderboards"
    )
    common_options(run)
    run.add_argument(
        "--config", type=Path, default=None, help="YAML file with any of these options (flags win)"
    )
    run.add_argument(
        "--datasets", default=None, help="names, shell patterns, 'default' (the default) or 'all'"
    )
    run.add_argument(
        "--victims",
        default=None,
        help="names, shell patterns, 'default' (the default) or 'all'; timm:<model> for any timm model",
    )
    run.add_argument(
        "--attacks",
        default=None,
        help="names, shell patterns, 'default' (the default) or 'all'; torchattacks:<Name> for more",
    )
    run.add_argument("--eps", default=None, help="L∞ budgets in 1/255 units, comma separated (default 16)")
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        help="leaderboard folder (default leaderboards; results store in OUT/.store)",
    )
    run.add_argument(
        "--victim-weights",
        action="append",
        default=None,
        metavar="VICTIM=PATH",
        help="use this checkpoint (advbench or the victim's official format)",
    )
    run.add_argument("--attack-param", action="append", default=None, metavar="ATTACK.KEY=VALUE")
    run.add_argument(
        "--defences",
        default=None,
        help="defences to evaluate through: names, 'none' (undefended, the default), 'all'; "
        "each also gets an adaptive craft when it transforms inputs",
    )
    run.add_argument("--defence-param", action="append", default=None, metavar="DEFENCE.KEY=VALUE")
    run.add_argument(
        "--side",
        default=None,
        help="what attacks perturb: query (default), gallery, or both comma separated",
    )
    run.add_argument(
        "--goal",
        default=None,
        help="untargeted (default), targeted (push chosen candidates up), demote (push them down); comma list",
    )
    run.add_argument(
        "--budget",
        default=None,
        help="linf (default), patch (patch attacks, sized by --patch-area), or both comma separated",
    )
    run.add_argument(
        "--gallery-images",
        type=int,
        default=None,
        help="gallery images a gallery-side craft perturbs (default 100, or all eligible when fewer)",
    )
    run.add_argument(
        "--patch-area",
        default=None,
        help="patch budgets as fractions of the image, comma separated (default 0.1); for patch attacks",
    )
    run.add_argument(
        "--targets-per-query",
        type=int,
        default=None,
        help="chosen candidates per query of a targeted or demote craft (default 5)",
    )
    run.add_argument(
        "--detect-images",
        type=int,
        default=None,
        help="attacked train images per craft for its spectral detector (default 64; 0: no detectability)",
    )
    run.add_argument(
        "--fit-on", default=None, metavar="DATASET", help="fit learning attacks on this dataset's train split"
    )
    run.add_argument(
        "--train-missing",
        action="store_true",
        default=None,
        help="train victims that have no checkpoint (always on for embedded datasets)",
    )
    run.add_argument("--batch-size", type=int, default=None, help="query images per batch (default 64)")
    run.add_argument(
        "--protocol",
        default=None,
        choices=["market", "cuhk03-classic"],
        help="Market-1501 protocol for every dataset (default) or CUHK03's single-gallery-shot CMC",
    )
    run.add_argument(
        "--no-quantize",
        action="store_true",
        default=None,
        help="keep adversarial images as floats instead of 8-bit",
    )
    run.add_argument(
        "--backend",
        default=None,
        choices=["local", "ray"],
        help="run tasks in this process (default) or as Ray tasks (pip install -e '.[ray]')",
    )
    run.add_argument(
        "--address", default=None, help="Ray cluster to join (e.g. HOST:6379 or auto); default: start one"
    )
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per task on either backend (default: this machine's cores); "
        "equal threads give equal numbers on both backends",
    )
    run.add_argument(
        "--amp", action="store_true", default=None, help="bf16 autocast for victims on CUDA (ignored on CPU)"
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="check every input, resolve datasets and victims, print the plan (cells done / to do, "
        "victims to train, fits) and exit without computing",
    )
    run.add_argument("--no-html", action="store_true", help="do not write OUT/index.html (the web page)")


def cmd_run(args: argparse.Namespace) -> int:
    from advbench import leaderboard
    from advbench.plugins import get_registry
    from advbench.runner import run
    from advbench.strips import strip_source
    from advbench.validate import validate

    registry = get_registry()
    config = _config_from(args)
    validate(config, registry)  # every input, before any dataset is loaded or anything computed
    if args.dry_run:
        return _dry_run(config, registry)
    start = time.perf_counter()
    summary = run(config, registry)
    strips = strip_source(config, registry)  # pixels for the image strips, from this run's data and cache
    # the folder's whole store, under its lock
    frame, problems = leaderboard.publish(config.out, strips, html=not args.no_html)
    for line in problems:
        print(f"warning: {line}", file=sys.stderr)
    print(
        f"{summary.done} cells computed, {summary.skipped} already done, {len(summary.failed)} failed "
        f"in {time.perf_counter() - start:.0f} s; {len(frame)} rows -> {config.out / 'results.csv'}"
    )
    for label, message in summary.failed:
        print(f"failed: {label}: {message}")
    return 1 if summary.failed else 0


def _dry_run(config: RunConfig, registry: Registry) -> int:
    """Print the plan a run of ``config`` would execute (what is done, what is left) and compute nothing.

    Planning is the run's own (:func:`advbench.runner.make_plan` and :func:`advbench.steps.pending`),
    so datasets are loaded as a run loads them: victim and cell keys hash each dataset's fingerprint and
    train ids, which only its plugin knows, so an embedded dataset not yet in the cache is generated
    (and kept for the run). Nothing is decoded, trained, fitted or crafted, the store is not written,
    and no cache entry is removed: a damaged one is reported as a run would recompute it.
    """
    from advbench.data.catalog import DatasetCatalog
    from advbench.records import FitRecord, RunSummary
    from advbench.runner import make_plan
    from advbench.steps import pending
    from advbench.store import ResultStore

    summary = RunSummary()
    store = ResultStore(Path(config.out) / ".store")
    # remove=False: a damaged cache entry is reported ("a run would recompute it") and left alone
    plan = make_plan(config, registry, DatasetCatalog(config, registry), summary, remove=False)
    todo = pending(plan, store, remove=False)
    left = {cell.craft.key: cell for cell in todo.cells}
    train = [r for r in todo.victims() if r.origin == "train"]
    for ref in train:
        print(f"train  {ref.label}: {ref.recipe.steps} steps, {ref.num_classes} ids -> {ref.checkpoint}")
    for fit in todo.fits:
        stored = (
            " (fitted before: reloaded if its cache entry is intact)"
            if isinstance(store.get(fit.key), FitRecord)
            else ""
        )
        print(f"fit    {fit.label.removeprefix('fit ')}{stored}")
    for cell in plan.cells:
        rest = left.get(cell.craft.key)
        if rest is None:
            print(f"done   {cell.craft.label}")
            continue
        work = [] if rest.crafted else ["craft"]
        work += [f"{len(rest.evals)} evaluation(s)"] if rest.evals else []
        work += ["detection"] if rest.detect is not None else []
        stored = " of stored queries" if rest.crafted else ""
        print(f"to do  {cell.craft.label}: {', '.join(work)}{stored}")
    for label, message in summary.failed:
        print(f"unavailable  {label}: {message}")
    print(
        f"dry run: {len(plan.cells)} cells, {len(plan.cells) - len(todo.cells)} done, {len(todo.cells)} "
        f"to do; {len(train)} victim(s) to train, {len(todo.fits)} fit(s); nothing computed"
    )
    return 1 if summary.failed else 0
