"""``advbench``: run the benchmark grid, train victims, list plugins and datasets, rebuild leaderboards.

One module per command (:mod:`advbench.cli.run`, ``train``, ``plugins``, ``datasets``,
``leaderboard``, ``new_plugin``), each adding its own options; the options they share are in
:mod:`advbench.cli.options`. ``advbench.cli:main`` is the console entry point.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from advbench.api import AdvbenchError
from advbench.cli import datasets, leaderboard, new_plugin, plugins, run, train
from advbench.cli.datasets import cmd_datasets
from advbench.cli.leaderboard import cmd_leaderboard
from advbench.cli.new_plugin import cmd_new_plugin
from advbench.cli.options import _config_from, _scoped  # noqa: F401  (importable from here as before)
from advbench.cli.plugins import cmd_plugins
from advbench.cli.run import cmd_run
from advbench.cli.train import cmd_train

__all__ = ["COMMANDS", "main", "parser"]

EXAMPLES = """examples:
  advbench run                                   # embedded default: synthetic x default victims x default attacks
  advbench run --attacks all --victims all --eps 4,16
  advbench run --datasets market1501 --data-root ~/data --victim-weights dgnet=~/ckpt/id_00100000.pt
  advbench train --victim resnet10t --dataset synthetic
  advbench plugins
"""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="advbench",
        description=__doc__.split("\n")[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = top.add_subparsers(dest="command", required=True)
    for command in (run, train, plugins, datasets, leaderboard, new_plugin):
        command.add_parser(sub)
    return top


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
