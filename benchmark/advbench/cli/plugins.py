"""``advbench plugins``: every dataset, victim, attack and defence plugin, with its defaults."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    """The ``plugins`` subcommand's options."""
    plugins = sub.add_parser("plugins", help="list every attack, victim and dataset plugin")
    plugins.add_argument("--kind", choices=["attack", "victim", "dataset", "defence"], default=None)


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
