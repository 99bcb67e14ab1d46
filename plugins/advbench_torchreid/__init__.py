"""advbench built-in plugin: torchreid (deep-person-reid) models as victims, ``torchreid:<arch>``.

Work in progress: filled in by the torchreid victim work (issue 16).
"""

from __future__ import annotations

from advbench import hookimpl
from advbench.api import VictimSpec

__version__ = "0.1.0"


@hookimpl
def advbench_victims() -> list[VictimSpec]:
    return []
