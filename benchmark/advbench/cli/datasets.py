"""``advbench datasets``: where each dataset was looked for and what was found (nothing written)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

from advbench.api import AdvbenchError


def add_parser(sub: Any) -> None:
    """The ``datasets`` subcommand's options."""
    datasets = sub.add_parser("datasets", help="show where each dataset was looked for and what was found")
    datasets.add_argument("--data-root", type=Path, default=None)
    datasets.add_argument("--cache", type=Path, default=None)


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
