"""``advbench``: run the benchmark grid, train victims, list plugins and datasets, rebuild leaderboards."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from advbench.api import AdvbenchError

if TYPE_CHECKING:
    from advbench.config import RunConfig
    from advbench.plugins import Registry

EXAMPLES = """examples:
  advbench run                                   # embedded default: synthetic x default victims x default attacks
  advbench run --attacks all --victims all --eps 4,16
  advbench run --datasets market1501 --data-root ~/data --victim-weights dgnet=~/ckpt/id_00100000.pt
  advbench train --victim resnet10t --dataset synthetic
  advbench plugins
"""


def _key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AdvbenchError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value) if value else ""
    return out


def _scoped(items: Sequence[str], flag: str) -> dict[str, dict[str, Any]]:
    """``NAME.KEY=VALUE`` flags -> {NAME: {KEY: VALUE}} (values parsed as YAML scalars)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in _key_values(items, flag).items():
        name, dot, param = key.partition(".")
        if not dot:
            raise AdvbenchError(f"{flag} expects NAME.KEY=VALUE (e.g. pgd.steps=20), got {key!r}")
        out.setdefault(name, {})[param] = value
    return out


def _size(text: str | Sequence[int] | None) -> tuple[int, int] | None:
    if not text:
        return None
    if isinstance(text, list | tuple):  # a config file's [H, W]
        return int(text[0]), int(text[1])
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise AdvbenchError(f"--input-size expects HxW such as 256x128, got {text!r}") from None
    return h, w


def _eps(value: str | float | Sequence[float]) -> tuple[float, ...]:
    """``--eps`` text (``4,16``), or a config file's number or list, as floats (ranges: :mod:`advbench.validate`)."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    try:
        values = tuple(float(x) for x in items if str(x).strip())
    except ValueError:
        raise AdvbenchError(f"--eps expects numbers in 1/255 units such as 4,8,16, got {value!r}") from None
    if not values:
        raise AdvbenchError(f"--eps expects numbers in 1/255 units such as 4,8,16, got {value!r}")
    return values


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache", type=Path, default=None, help="cache folder (default $ADVBENCH_CACHE or ~/.cache/advbench)"
    )
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder holding the real datasets (default $ADVBENCH_DATA)",
    )
    p.add_argument("--device", default=None, help="auto (CUDA when present, the default), cpu or cuda[:N]")
    p.add_argument("--seed", type=int, default=None, help="run seed (default 0)")
    p.add_argument("--dataset-param", action="append", default=None, metavar="DATASET.KEY=VALUE")
    p.add_argument("--victim-param", action="append", default=None, metavar="VICTIM.KEY=VALUE")
    p.add_argument(
        "--train-steps", type=int, default=None, help="override every victim's training step budget"
    )
    p.add_argument("--input-size", default=None, metavar="HxW", help="override the dataset's crop size")
    p.add_argument("--no-progress", action="store_true", default=None, help="no progress bars")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="advbench",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run", help="run the (dataset x attack x eps x source victim) grid and write leaderboards"
    )
    _common(run)
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

    train = sub.add_parser("train", help="train a victim on a dataset's train split and cache the checkpoint")
    _common(train)
    train.add_argument("--victim", required=True)
    train.add_argument("--dataset", default="synthetic")
    train.add_argument("--output", type=Path, default=None, help="also copy the checkpoint here")
    train.add_argument(
        "--adversarial",
        choices=["pgd"],
        default=None,
        help="adversarial training (Madry et al. 2018); the robust victim is named VICTIM@at<eps>",
    )
    train.add_argument("--adv-eps", type=float, default=None, help="its L∞ budget in 1/255 units (default 4)")
    train.add_argument("--adv-steps", type=int, default=None, help="its PGD steps per batch (default 3)")

    plugins = sub.add_parser("plugins", help="list every attack, victim and dataset plugin")
    plugins.add_argument("--kind", choices=["attack", "victim", "dataset", "defence"], default=None)

    datasets = sub.add_parser("datasets", help="show where each dataset was looked for and what was found")
    datasets.add_argument("--data-root", type=Path, default=None)
    datasets.add_argument("--cache", type=Path, default=None)

    board = sub.add_parser(
        "leaderboard",
        help="rebuild and print a leaderboard from its results store, or merge several machines' stores",
        description="advbench leaderboard [--out DIR]: rebuild DIR's files and print its tables; "
        "advbench leaderboard merge STORE... --out DIR: join stores (leaderboard or .store folders) into DIR",
    )
    board.add_argument("action", nargs="?", choices=["merge"], help="merge the STOREs into --out")
    board.add_argument("stores", nargs="*", type=Path, metavar="STORE", help="stores to merge, first wins")
    board.add_argument("--out", type=Path, default=None, help="leaderboard folder (default leaderboards)")
    board.add_argument("--dataset", default=None, help="print only this dataset's tables")
    board.add_argument("--attack", default=None, help="print only this attack's tables")
    board.add_argument("--no-html", action="store_true", help="do not write OUT/index.html (the web page)")
    scaffold = sub.add_parser("new-plugin", help="write a plugin package skeleton whose tests run the kit")
    scaffold.add_argument("name", help="plugin name, e.g. my-attacks (package advbench-my-attacks)")
    scaffold.add_argument("--dir", type=Path, default=Path("."), help="where to create the package folder")
    return top


def _merge_scoped(*layers: Any) -> dict[str, dict[str, Any]]:
    """{NAME: {KEY: VALUE}} layers merged key by key, later layers winning."""
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for name, params in layer.items():
            out.setdefault(name, {}).update(params)
    return out


def _areas(value: Any) -> tuple[float, ...] | None:
    """``0.05,0.1`` (or a number, or a config file's list) as patch areas; None when not given."""
    if value is None:
        return None
    items = value if isinstance(value, list) else str(value).split(",")
    try:
        return tuple(float(item) for item in items if str(item).strip())
    except ValueError:
        raise AdvbenchError(
            f"--patch-area expects fractions of the image such as 0.05,0.1, got {value!r}"
        ) from None


def _words(value: Any) -> tuple[str, ...] | None:
    """``a,b`` or a config file's list as a tuple of words (None when not given)."""
    if value is None:
        return None
    items = value if isinstance(value, list) else str(value).split(",")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _listed(value: Any) -> list[str]:
    """A config file's string or list of ``NAME.KEY=VALUE`` items as a list."""
    return [value] if isinstance(value, str) else list(value or [])


def _config_from(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of ``args``: each flag given wins, then the ``--config`` file, then RunConfig's default.

    Every flag defaults to None, so that a flag given with its default value (``--eps 16``) still wins
    over the file; ``--config`` keys and types are checked by :func:`advbench.validate.read_config_file`.
    """
    from advbench.config import RunConfig
    from advbench.validate import read_config_file

    options = read_config_file(args.config) if getattr(args, "config", None) else {}

    def pick(name: str) -> Any:
        flag = getattr(args, name, None)
        return flag if flag is not None else options.get(name)

    def names(name: str) -> str | None:
        value = pick(name)
        return ",".join(value) if isinstance(value, list) else value

    given: dict[str, Any] = {
        "datasets": names("datasets"),
        "victims": names("victims"),
        "attacks": names("attacks"),
        "defences": names("defences"),
        "detect_images": pick("detect_images"),
        "eps": _eps(pick("eps")) if pick("eps") is not None else None,
        "out": Path(pick("out")).expanduser() if pick("out") is not None else None,
        "cache_dir": Path(pick("cache")).expanduser() if pick("cache") is not None else None,
        "data_root": Path(pick("data_root")).expanduser() if pick("data_root") is not None else None,
        "device": pick("device"),
        "seed": pick("seed"),
        "train_steps": pick("train_steps"),
        "train_missing": pick("train_missing"),
        "fit_on": pick("fit_on"),
        "input_size": _size(pick("input_size")),
        "batch_size": pick("batch_size"),
        "quantize": None if pick("no_quantize") is None else not pick("no_quantize"),
        "protocol": pick("protocol"),
        "backend": pick("backend"),
        "address": pick("address"),
        "threads": pick("threads"),
        "amp": pick("amp"),
        "sides": _words(pick("side")),
        "goals": _words(pick("goal")),
        "budgets": _words(pick("budget")),
        "targets_per_query": pick("targets_per_query"),
        "patch_areas": _areas(pick("patch_area")),
        "gallery_images": pick("gallery_images"),
    }
    weights = {
        **options.get("victim_weights", {}),
        **_key_values(getattr(args, "victim_weights", None) or [], "--victim-weights"),
    }
    scoped = {
        kind: _merge_scoped(
            options.get(f"{kind}_params", {}),
            _scoped(_listed(options.get(f"{kind}_param")), f"--{kind}-param"),
            _scoped(getattr(args, f"{kind}_param", None) or [], f"--{kind}-param"),
        )
        for kind in ("attack", "victim", "dataset", "defence")
    }
    return RunConfig(
        **{k: v for k, v in given.items() if v is not None},
        victim_weights={k: Path(str(v)).expanduser() for k, v in weights.items()},
        attack_params=scoped["attack"],
        defence_params=scoped["defence"],
        victim_params=scoped["victim"],
        dataset_params=scoped["dataset"],
        progress=not pick("no_progress") and sys.stderr.isatty(),
    )


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


def cmd_train(args: argparse.Namespace) -> int:
    import shutil

    from advbench import victims
    from advbench.adversarial_training import train_name
    from advbench.data.catalog import DatasetCatalog
    from advbench.plugins import get_registry
    from advbench.utils import resolve_device
    from advbench.validate import validate

    registry = get_registry()
    name = train_name(args.victim, args.adversarial, args.adv_eps, args.adv_steps)
    args.victims, args.datasets = name, args.dataset
    config = _config_from(args)
    validate(config, registry, out=False)
    catalog = DatasetCatalog(config, registry)
    ds = args.dataset
    ref = victims.resolve(
        name, catalog.get(ds), catalog.input_size(ds), config, registry, True, train_missing=True
    )
    origin = ref.origin
    if origin == "train":
        device = resolve_device(config.device)
        victims.train(
            ref, catalog.split(ds, "train"), registry=registry, device=device, progress=config.progress
        )
        origin = "trained"
    if args.output:
        shutil.copyfile(ref.checkpoint, args.output)
    print(f"{name} on {ds}: {origin} checkpoint {args.output or ref.checkpoint}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from advbench.plugins import get_registry

    registry = get_registry()
    for kind in ("dataset", "victim", "attack", "defence"):
        if args.kind and args.kind != kind:
            continue
        names = registry.names(kind)
        width = max((len(n) + 10 for n in names), default=10)
        print(f"{kind}s:")
        for name in names:
            entry = registry.entries[kind][name]
            spec = entry.spec
            shown = f"{name}:<variant>" if getattr(spec, "variant", False) else name
            flag = "*" if getattr(spec, "default", False) else " "
            print(
                f"  {flag} {shown.ljust(width)} {entry.package} {entry.package_version}  {spec.description}"
            )
            defaults = [f"{k}={v}" for k, v in spec.defaults.items()]
            if kind == "victim":
                defaults.append(f"train_steps={spec.recipe.steps}")
            if defaults:
                print(f"    {''.ljust(width)} defaults: {', '.join(defaults)}")
            if getattr(spec, "variants", ()):
                print(f"    {''.ljust(width)} variants: {', '.join(spec.variants)}")
            threats = [t.label for t in getattr(spec, "threats", ())]
            if kind == "attack" and threats != ["query/untargeted/linf"]:
                print(f"    {''.ljust(width)} threats: {', '.join(threats)} (side/goal/budget)")
    print("\n* = in the default selection; name:<variant> = a family (timm:resnet50, torchattacks:APGD)")
    for line in registry.problems_report():  # each left-out plugin: package, why, how to disable it
        print(line)
    return 1 if registry.problems else 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from advbench.config import default_cache_dir, default_data_root
    from advbench.plugins import get_registry

    registry = get_registry()
    root = args.data_root or default_data_root()
    cache = (args.cache or default_cache_dir()) / "datasets"
    print(f"data root: {root or '(none: pass --data-root or set ADVBENCH_DATA)'}")
    for name in registry.names("dataset"):
        spec = registry.entries["dataset"][name].spec
        if spec.embedded:
            print(f"\n{name}: embedded, generated into {cache} on first use ({spec.description})")
            continue
        if root is None:
            print(
                f"\n{name}: not looked for (no data root); expected layout:\n    "
                + spec.layout.strip().replace("\n", "\n    ")
            )
            continue
        params = {
            **spec.defaults,
            **({"extract": False} if "extract" in spec.defaults else {}),
        }  # look, never write
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                data = spec.load(root, cache, **params)
            except AdvbenchError as exc:
                print(f"\n{name}: NOT READY: {exc}")
                continue
        counts = data.counts()
        print(f"\n{name}: found at {data.root}")
        print(
            "  "
            + ", ".join(
                f"{split}: {counts[f'{split}_ids']} ids / {counts[f'{split}_images']} images"
                for split in ("train", "query", "gallery")
            )
        )
        for w in caught:
            print(f"  warning: {w.message}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from advbench import board_text, leaderboard, merge

    if args.action != "merge" and args.stores:
        raise AdvbenchError(f"unexpected argument {args.stores[0]}; to join stores: leaderboard merge")
    disagreements: list[str] = []
    if args.action == "merge":
        if not args.stores or args.out is None:
            raise AdvbenchError("leaderboard merge needs STORE... and --out DIR (the folder to merge into)")
        merged, frame, problems = merge.merge_stores(args.stores, args.out, html=not args.no_html)
        disagreements = merge.disagreement_lines(merged.disagreements)
    else:
        args.out = args.out or Path("leaderboards")
        frame, problems = leaderboard.publish(args.out, html=not args.no_html)
    for line in problems:
        print(f"warning: {line}", file=sys.stderr)
    if frame.empty:
        print(f"no finished cell in {args.out / '.store'}: nothing written")
        return 1
    print(board_text.render(frame, dataset=args.dataset, attack=args.attack))
    print(f"{len(frame)} rows -> {args.out / 'results.csv'}")
    for line in disagreements:
        print(line)
    if disagreements:
        print(f"{len(disagreements)} disagreements (first store kept) -> {args.out / 'disagreements.csv'}")
        return 1
    return 0


def cmd_new_plugin(args: argparse.Namespace) -> int:
    from advbench.scaffold import new_plugin

    folder = new_plugin(args.name, args.dir)
    print(f"wrote {folder}: pip install -e {folder} && python -m pytest {folder / 'tests'}")
    return 0


COMMANDS = {
    "run": cmd_run,
    "train": cmd_train,
    "plugins": cmd_plugins,
    "datasets": cmd_datasets,
    "leaderboard": cmd_leaderboard,
    "new-plugin": cmd_new_plugin,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except AdvbenchError as exc:
        print(f"advbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("advbench: interrupted; finished cells are kept in the results store", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
