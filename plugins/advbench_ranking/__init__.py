"""advbench built-in plugin: ranking and metric attacks of the re-ID / retrieval attack literature.

Work in progress (issue 17).
"""

from __future__ import annotations

from advbench import hookimpl
from advbench.api import AttackSpec

__version__ = "0.1.0"


@hookimpl
def advbench_attacks() -> list[AttackSpec]:
    return []
