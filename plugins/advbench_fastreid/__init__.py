"""advbench built-in plugin: fast-reid checkpoints as victims, ``fastreid:<model>``, without depending on fast-reid.

Work in progress: filled in by the fast-reid victim work (issue 16).
"""

from __future__ import annotations

from advbench import hookimpl
from advbench.api import VictimSpec

__version__ = "0.1.0"


@hookimpl
def advbench_victims() -> list[VictimSpec]:
    return []
