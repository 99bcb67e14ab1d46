"""``advbench leaderboard``: rebuild and print a leaderboard, or merge several machines' stores."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from advbench.api import AdvbenchError


def add_parser(sub: Any) -> None:
    """The ``leaderboard`` subcommand's options."""
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
