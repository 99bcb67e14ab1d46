"""``advbench train``: train one victim on a dataset's train split and cache its checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from advbench.cli.options import _config_from, common_options


def add_parser(sub: Any) -> None:
    """The ``train`` subcommand's options."""
    train = sub.add_parser("train", help="train a victim on a dataset's train split and cache the checkpoint")
    common_options(train)
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
