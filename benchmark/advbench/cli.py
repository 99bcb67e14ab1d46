"""``advbench``: run the benchmark grid, train victims, list plugins and datasets, rebuild leaderboards."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from advbench.api import AdvbenchError

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


def _size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise AdvbenchError(f"--input-size expects HxW such as 256x128, got {text!r}") from None
    return h, w


def _eps(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise AdvbenchError(f"--eps expects numbers in 1/255 units such as 4,8,16, got {text!r}") from None
    if not values or any(v <= 0 or v > 255 for v in values):
        raise AdvbenchError(f"--eps values must be in (0, 255] (1/255 units), got {text!r}")
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
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset-param", action="append", default=[], metavar="DATASET.KEY=VALUE")
    p.add_argument("--victim-param", action="append", default=[], metavar="VICTIM.KEY=VALUE")
    p.add_argument(
        "--train-steps", type=int, default=None, help="override every victim's training step budget"
    )
    p.add_argument("--input-size", default=None, metavar="HxW", help="override the dataset's crop size")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


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
    run.add_argument("--datasets", default="default", help="names, shell patterns, 'default' or 'all'")
    run.add_argument(
        "--victims",
        default="default",
        help="names, shell patterns, 'default' or 'all'; timm:<model> for any timm model",
    )
    run.add_argument(
        "--attacks",
        default="default",
        help="names, shell patterns, 'default' or 'all'; torchattacks:<Name> for more",
    )
    run.add_argument("--eps", default="16", help="L∞ budgets in 1/255 units, comma separated (default 16)")
    run.add_argument(
        "--out",
        type=Path,
        default=Path("leaderboards"),
        help="leaderboard folder (results store in OUT/.store)",
    )
    run.add_argument(
        "--victim-weights",
        action="append",
        default=[],
        metavar="VICTIM=PATH",
        help="use this checkpoint (advbench or the victim's official format)",
    )
    run.add_argument("--attack-param", action="append", default=[], metavar="ATTACK.KEY=VALUE")
    run.add_argument(
        "--fit-on", default=None, metavar="DATASET", help="fit learning attacks on this dataset's train split"
    )
    run.add_argument(
        "--train-missing",
        action="store_true",
        help="train victims that have no checkpoint (always on for embedded datasets)",
    )
    run.add_argument("--batch-size", type=int, default=64)
    run.add_argument(
        "--protocol",
        default="market",
        choices=["market", "cuhk03-classic"],
        help="Market-1501 protocol for every dataset (default) or CUHK03's single-gallery-shot CMC",
    )
    run.add_argument(
        "--no-quantize", action="store_true", help="keep adversarial images as floats instead of 8-bit"
    )
    run.add_argument(
        "--backend",
        default="local",
        choices=["local", "ray"],
        help="run tasks in this process (default) or as Ray tasks (pip install -e '.[ray]')",
    )
    run.add_argument(
        "--address", default=None, help="Ray cluster to join (e.g. HOST:6379 or auto); default: start one"
    )
    run.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads per task on either backend (default: this machine's cores); "
        "equal threads give equal numbers on both backends",
    )
    run.add_argument("--amp", action="store_true", help="bf16 autocast for victims on CUDA (ignored on CPU)")

    train = sub.add_parser("train", help="train a victim on a dataset's train split and cache the checkpoint")
    _common(train)
    train.add_argument("--victim", required=True)
    train.add_argument("--dataset", default="synthetic")
    train.add_argument("--output", type=Path, default=None, help="also copy the checkpoint here")

    plugins = sub.add_parser("plugins", help="list every attack, victim and dataset plugin")
    plugins.add_argument("--kind", choices=["attack", "victim", "dataset"], default=None)

    datasets = sub.add_parser("datasets", help="show where each dataset was looked for and what was found")
    datasets.add_argument("--data-root", type=Path, default=None)
    datasets.add_argument("--cache", type=Path, default=None)

    board = sub.add_parser("leaderboard", help="rebuild the leaderboard files from a results store")
    board.add_argument("--out", type=Path, default=Path("leaderboards"))
    return top


def _config_from(args: argparse.Namespace):
    from advbench.config import RunConfig, default_cache_dir, default_data_root

    options: dict[str, Any] = {}
    if getattr(args, "config", None):
        try:
            options = yaml.safe_load(Path(args.config).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise AdvbenchError(f"cannot read config file {args.config}: {exc}") from None
        if not isinstance(options, dict):
            raise AdvbenchError(f"config file {args.config} must hold a mapping of options")

    def pick(name: str, flag_value: Any, default: Any) -> Any:
        return flag_value if flag_value not in (None, [], default) else options.get(name, flag_value)

    data_root = pick("data_root", args.data_root, None) or default_data_root()
    weights = {
        **options.get("victim_weights", {}),
        **_key_values(getattr(args, "victim_weights", []), "--victim-weights"),
    }
    return RunConfig(
        datasets=pick("datasets", getattr(args, "datasets", "default"), "default"),
        victims=pick("victims", getattr(args, "victims", "default"), "default"),
        attacks=pick("attacks", getattr(args, "attacks", "default"), "default"),
        eps=_eps(pick("eps", getattr(args, "eps", "16"), "16")),
        out=Path(pick("out", getattr(args, "out", Path("leaderboards")), Path("leaderboards"))),
        cache_dir=Path(pick("cache", args.cache, None) or default_cache_dir()).expanduser(),
        data_root=Path(data_root).expanduser() if data_root else None,
        device=pick("device", args.device, "auto"),
        seed=int(pick("seed", args.seed, 0)),
        victim_weights={k: Path(str(v)).expanduser() for k, v in weights.items()},
        attack_params={
            **options.get("attack_params", {}),
            **_scoped(getattr(args, "attack_param", []), "--attack-param"),
        },
        dataset_params={
            **options.get("dataset_params", {}),
            **_scoped(args.dataset_param, "--dataset-param"),
        },
        victim_params={**options.get("victim_params", {}), **_scoped(args.victim_param, "--victim-param")},
        train_steps=pick("train_steps", args.train_steps, None),
        train_missing=bool(getattr(args, "train_missing", False) or options.get("train_missing", False)),
        fit_on=pick("fit_on", getattr(args, "fit_on", None), None),
        input_size=_size(pick("input_size", args.input_size, None)),
        batch_size=int(pick("batch_size", getattr(args, "batch_size", 64), 64)),
        quantize=not (getattr(args, "no_quantize", False) or options.get("no_quantize", False)),
        protocol=pick("protocol", getattr(args, "protocol", "market"), "market"),
        progress=not args.no_progress and sys.stderr.isatty(),
        backend=pick("backend", getattr(args, "backend", "local"), "local"),
        address=pick("address", getattr(args, "address", None), None),
        threads=int(pick("threads", getattr(args, "threads", 0), 0)),
        amp=bool(getattr(args, "amp", False) or options.get("amp", False)),
    )


def cmd_run(args: argparse.Namespace) -> int:
    from advbench import leaderboard
    from advbench.plugins import get_registry
    from advbench.runner import run

    registry = get_registry()
    config = _config_from(args)
    for kind, selector in (
        ("dataset", config.datasets),
        ("victim", config.victims),
        ("attack", config.attacks),
    ):
        registry.select(kind, selector)  # unknown names fail here, before any work
    if config.fit_on:
        registry.get("dataset", config.fit_on)
    for name in config.victim_weights:
        registry.get("victim", name)
    start = time.perf_counter()
    summary = run(config, registry)
    frame = leaderboard.write(summary.records, config.out)
    print(
        f"{summary.done} cells computed, {summary.skipped} already done, {len(summary.failed)} failed "
        f"in {time.perf_counter() - start:.0f} s; {len(frame)} rows -> {config.out / 'results.csv'}"
    )
    for label, message in summary.failed:
        print(f"failed: {label}: {message}")
    return 1 if summary.failed else 0


def cmd_train(args: argparse.Namespace) -> int:
    import shutil

    from advbench import victims
    from advbench.data.catalog import DatasetCatalog
    from advbench.plugins import get_registry
    from advbench.utils import resolve_device

    registry = get_registry()
    args.victims = args.victim
    config = _config_from(args)
    catalog = DatasetCatalog(config, registry)
    ds = args.dataset
    ref = victims.resolve(
        args.victim, catalog.get(ds), catalog.input_size(ds), config, registry, True, train_missing=True
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
    print(f"{args.victim} on {ds}: {origin} checkpoint {args.output or ref.checkpoint}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from advbench.plugins import get_registry

    registry = get_registry()
    for kind in ("dataset", "victim", "attack"):
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
    from advbench import leaderboard
    from advbench.store import ResultStore

    frame = leaderboard.write(ResultStore(args.out / ".store").records(), args.out)
    print(f"{len(frame)} rows -> {args.out / 'results.csv'}")
    return 0


COMMANDS = {
    "run": cmd_run,
    "train": cmd_train,
    "plugins": cmd_plugins,
    "datasets": cmd_datasets,
    "leaderboard": cmd_leaderboard,
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
