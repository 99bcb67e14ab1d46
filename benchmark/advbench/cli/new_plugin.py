"""``advbench new-plugin``: write a plugin package skeleton whose tests run the conformance kit."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    """The ``new-plugin`` subcommand's options."""
    scaffold = sub.add_parser("new-plugin", help="write a plugin package skeleton whose tests run the kit")
    scaffold.add_argument("name", help="plugin name, e.g. my-attacks (package advbench-my-attacks)")
    scaffold.add_argument("--dir", type=Path, default=Path("."), help="where to create the package folder")


def cmd_new_plugin(args: argparse.Namespace) -> int:
    from advbench.scaffold import new_plugin

    folder = new_plugin(args.name, args.dir)
    print(f"wrote {folder}: pip install -e {folder} && python -m pytest {folder / 'tests'}")
    return 0
