"""advbench built-in plugin: patch attacks (issue 17). Work in progress."""

from __future__ import annotations

from advbench import hookimpl
from advbench.api import AttackSpec

__version__ = "0.1.0"


@hookimpl
def advbench_attacks() -> list[AttackSpec]:
    return []
