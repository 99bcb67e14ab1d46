"""DukeMTMC-reID: 702 train ids, 702 query ids, 1,110 gallery ids (408 distractor ids), 8 cameras.

Same folder layout as Market-1501; names like ``0001_c2_f0046182.jpg`` (pid, camera 1..8, frame).
There are no junk files. Duke withdrew the dataset in 2019; only existing copies can be used.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from advbench.api import DatasetSpec, ReidDataset
from advbench_datasets import common

NAME = "dukemtmcreid"
VERSION = "1"
DEFAULTS: dict[str, Any] = {"verify": True}
FOLDERS = ("DukeMTMC-reID", "dukemtmc-reid/DukeMTMC-reID", "dukemtmcreid/DukeMTMC-reID")
PATTERN = common.NamePattern(
    re.compile(r"(\d+)_c(\d)_f\d"), "0001_c2_f0046182.jpg", pids=(0, 99_999), cams=(1, 8)
)
RELEASE = {
    "train": common.Expected(702, 16_522),
    "query": common.Expected(702, 2_228),
    "gallery": common.Expected(1_110, 17_661),
}
LAYOUT = """\
<data-root>/DukeMTMC-reID/   (or dukemtmc-reid/DukeMTMC-reID/)
  bounding_box_train/  16,522 jpg, e.g. 0001_c2_f0046182.jpg
  query/                2,228 jpg
  bounding_box_test/   17,661 jpg"""


def load(root: Path | str | None, cache_dir: Path | None = None, **params: Any) -> ReidDataset:
    """DukeMTMC-reID under ``root`` (the data root); ``verify`` checks each file's JPEG markers."""
    p = common.resolve_params(NAME, DEFAULTS, params)
    data = common.data_root(NAME, root, LAYOUT)
    folder = common.find_folder(
        NAME, data, FOLDERS, list(common.BBOX_SPLITS.values()), LAYOUT, "DukeMTMC-reID"
    )
    splits, files, _ = common.load_bbox_splits(NAME, folder, PATTERN, (".jpg",), LAYOUT)
    info = {"variant": "", "protocol": "dukemtmcreid", "folder": str(folder)}
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
    common.check_counts(NAME, folder, common.split_counts(splits), RELEASE, "the DukeMTMC-reID release")
    return dataset


SPEC = DatasetSpec(
    name=NAME,
    description="DukeMTMC-reID: 1,404 ids + 408 distractor ids, 8 cameras (withdrawn in 2019)",
    load=load,
    defaults=DEFAULTS,
    layout=LAYOUT,
    embedded=False,
    default=False,
    input_size=(256, 128),
    version=VERSION,
)
