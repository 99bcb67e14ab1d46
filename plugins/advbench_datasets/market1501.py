"""Market-1501 (``Market-1501-v15.09.15``): 751 train ids, 750 test ids, 6 cameras.

Protocol as torchreid and fast-reid load it: pid -1 (junk boxes) dropped from every split at load,
pid 0 (DPM false detections) kept as gallery distractors, train pids relabelled, query/gallery
pids raw, camera ids 0-based. Ids come from the file name only (``0002_c1s1_000451_03.jpg``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from advbench.api import DatasetSpec, ReidDataset
from advbench_datasets import common

NAME = "market1501"
VERSION = "1"
DEFAULTS: dict[str, Any] = {"verify": True}
FOLDERS = ("Market-1501-v15.09.15", "market1501/Market-1501-v15.09.15", "market1501")
PATTERN = common.NamePattern(
    re.compile(r"(-1|\d+)_c(\d)s\d"), "0002_c1s1_000451_03.jpg", pids=(-1, 1501), cams=(1, 6)
)
JUNK_PID = -1
DISTRACTOR_PID = 0
RELEASE = {
    "train": common.Expected(751, 12_936),
    "query": common.Expected(750, 3_368),
    "gallery": common.Expected(751, 15_913),
}
LAYOUT = """\
<data-root>/Market-1501-v15.09.15/   (or market1501/Market-1501-v15.09.15/, or market1501/)
  bounding_box_train/  12,936 jpg, e.g. 0002_c1s1_000451_03.jpg
  query/                3,368 jpg
  bounding_box_test/   19,732 jpg (-1_* junk dropped, 0000_* distractors kept)"""


def load(root: Path | str | None, cache_dir: Path | None = None, **params: Any) -> ReidDataset:
    """Market-1501 under ``root`` (the data root); ``verify`` checks each file's JPEG markers."""
    p = common.resolve_params(NAME, DEFAULTS, params)
    data = common.data_root(NAME, root, LAYOUT)
    folder = common.find_folder(NAME, data, FOLDERS, list(common.BBOX_SPLITS.values()), LAYOUT, "Market-1501")
    splits, files, dropped = common.load_bbox_splits(
        NAME, folder, PATTERN, (".jpg",), LAYOUT, drop_pids=(JUNK_PID,)
    )
    distractors = sum(s.pid == DISTRACTOR_PID for s in splits["gallery"])
    info = {
        "variant": "",
        "protocol": "market1501",
        "folder": str(folder),
        "junk_dropped": sum(dropped.values()),
        "distractors": distractors,
    }
    dataset = common.build_dataset(
        NAME,
        VERSION,
        {},  # no protocol parameter: `verify` does not change the content
        folder,
        common.relabel(splits["train"]),
        splits["query"],
        splits["gallery"],
        files,
        info,
        verify=p["verify"],
        cache_dir=cache_dir,
    )
    common.check_counts(NAME, folder, common.split_counts(splits), RELEASE, "the Market-1501 release")
    return dataset


SPEC = DatasetSpec(
    name=NAME,
    description="Market-1501: 1,501 ids, 6 cameras, 32,668 DPM boxes (751 train / 750 test ids)",
    load=load,
    defaults=DEFAULTS,
    layout=LAYOUT,
    embedded=False,
    default=False,
    input_size=(256, 128),
    version=VERSION,
)
