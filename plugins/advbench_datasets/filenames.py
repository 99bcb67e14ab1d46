"""Person and camera ids from an image's file name, the way each release encodes them.

Only the basename is parsed; a name that does not fit, or ids outside the release's range, are
one-line errors naming the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from advbench_datasets.errors import DatasetError


@dataclass(frozen=True)
class NamePattern:
    """How a dataset's file names carry the person and camera ids (parsed from the basename only).

    ``regex`` must capture the pid then the 1-based camera number at the start of the name.
    """

    regex: re.Pattern[str]
    example: str
    pids: tuple[int, int]
    cams: tuple[int, int]


def parse_name(dataset: str, path: str, pattern: NamePattern, layout: str) -> tuple[int, int]:
    """(raw pid, 0-based camid) from the file name; anything else is a one-line error naming it."""
    m = pattern.regex.match(os.path.basename(path))
    if m is None:
        raise DatasetError(
            dataset, f"cannot parse ids from file name {path} (expected names like {pattern.example})", layout
        )
    pid, cam = int(m.group(1)), int(m.group(2))
    if not pattern.pids[0] <= pid <= pattern.pids[1]:
        raise DatasetError(
            dataset,
            f"person id {pid} outside {pattern.pids[0]}..{pattern.pids[1]} in file name {path}",
            layout,
        )
    if not pattern.cams[0] <= cam <= pattern.cams[1]:
        raise DatasetError(
            dataset, f"camera {cam} outside {pattern.cams[0]}..{pattern.cams[1]} in file name {path}", layout
        )
    return pid, cam - 1
