"""MSMT17 (V1, or V2 with blurred faces): 4,101 ids, 15 cameras, splits given by four list files.

Each list line is ``<pid_dir>/<file>.jpg <pid>``; train/val lines point into the train folder,
query/gallery lines into the test folder. The camera is the third underscore field of the file
name (``0000_000_01_0303morning_0015_0.jpg`` -> camera 01 -> camid 0). As torchreid and fast-reid
do by default, only ``list_train.txt`` trains; ``include_val=True`` adds ``list_val.txt``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from advbench.api import DatasetSpec, ReidDataset, Sample
from advbench_datasets import common
from advbench_datasets.counts import Expected
from advbench_datasets.errors import DatasetError
from advbench_datasets.folders import File

NAME = "msmt17"
VERSION = "1"
DEFAULTS: dict[str, Any] = {"version": "auto", "include_val": False, "verify": True}
CHOICES = {"version": ("auto", "V1", "V2")}
DIRS = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}
LISTS = {
    "train": "list_train.txt",
    "val": "list_val.txt",
    "query": "list_query.txt",
    "gallery": "list_gallery.txt",
}
CAMS = (1, 15)
EXAMPLE = "0000_000_01_0303morning_0015_0.jpg"
PID = re.compile(r"-?\d+")
RELEASE = {
    "train+val": Expected(1_041, 32_621),
    "query": Expected(3_060, 11_659),
    "gallery": Expected(3_060, 82_161),
}
LAYOUT = """\
<data-root>/MSMT17_V1/   (or MSMT17_V2/, msmt17/MSMT17_V1/, msmt17/MSMT17_V2/)
  train/ test/   (V2: mask_train_v2/ mask_test_v2/), one folder per pid: 0000/0000_000_01_0303morning_0015_0.jpg
  list_train.txt list_val.txt list_query.txt list_gallery.txt   (lines "0000/<file>.jpg 0")"""


def _candidates(version: str) -> tuple[str, ...]:
    return (f"MSMT17_{version}", f"msmt17/MSMT17_{version}")


def load(root: Path | str | None, cache_dir: Path | None = None, **params: Any) -> ReidDataset:
    """MSMT17 under ``root``; ``version`` auto tries V1 then V2 (as torchreid and fast-reid)."""
    p = common.resolve_params(NAME, DEFAULTS, params, CHOICES)
    data = common.data_root(NAME, root, LAYOUT)
    versions = ("V1", "V2") if p["version"] == "auto" else (p["version"],)
    folder, version = None, versions[0]
    for version in versions:
        folder = common.locate(data, _candidates(version), [*DIRS[version], *LISTS.values()])
        if folder is not None:
            break
    if folder is None:
        looked = ", ".join(f"{c}/" for v in versions for c in _candidates(v))
        raise DatasetError(NAME, f"no MSMT17 folder in data root {data} (looked for {looked})", LAYOUT)
    train_dir = common.require_dir(NAME, folder, DIRS[version][0], LAYOUT)
    test_dir = common.require_dir(NAME, folder, DIRS[version][1], LAYOUT)
    why = " (some copies ship without the list files; they come from the MSMT17 authors)"
    lists = {
        split: common.require_file(NAME, folder, LISTS[split], LAYOUT, why)
        for split in ("train", "query", "gallery")
    }
    val_list = common.child(folder, LISTS["val"])
    if val_list is None and p["include_val"]:
        common.require_file(NAME, folder, LISTS["val"], LAYOUT, " (needed by include_val=True)")

    files: list[File] = []
    train = _read_list(lists["train"], train_dir, files)
    val = _read_list(val_list, train_dir, files) if val_list is not None else []
    query = _read_list(lists["query"], test_dir, files)
    gallery = _read_list(lists["gallery"], test_dir, files)

    got = common.split_counts({"train+val": train + val, "train": train, "query": query, "gallery": gallery})
    expected = RELEASE
    if val_list is None:  # without list_val only the train ids can be checked
        expected = {"train": Expected(1_041, None), "query": RELEASE["query"], "gallery": RELEASE["gallery"]}
    used = train + val if p["include_val"] else train
    info = {
        "variant": version,
        "protocol": "train+val" if p["include_val"] else "train",
        "folder": str(folder),
        "val_images": len(val),
    }
    dataset = common.build_dataset(
        NAME,
        VERSION,
        {"version": version, "include_val": p["include_val"]},
        folder,
        common.relabel(common.sort_samples(used)),
        common.sort_samples(query),
        common.sort_samples(gallery),
        files,
        info,
        verify=p["verify"],
        cache_dir=cache_dir,
    )
    common.check_counts(NAME, folder, got, expected, f"MSMT17_{version}")
    return dataset


def _read_list(list_path: Path, base: Path, files: list[File]) -> list[Sample]:
    """Samples of one list file, each file stat'ed into ``files``; every bad line is an error."""
    try:
        text = list_path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DatasetError(NAME, f"cannot read {list_path}: {exc.strerror}") from None
    samples: list[Sample] = []
    missing: list[str] = []
    base_text = str(base).rstrip("/")
    total = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        total += 1
        parts = line.split()
        if len(parts) != 2 or not PID.fullmatch(parts[1]):
            raise DatasetError(
                NAME,
                f"{list_path} line {number}: expected '<pid>/<file>.jpg <pid>', got {line[:80]!r}",
                LAYOUT,
            )
        rel, pid = parts[0], int(parts[1])
        name = rel.rsplit("/", 1)[-1]
        fields = name.split("_")
        cam = int(fields[2]) if len(fields) > 3 and fields[2].isdigit() else -1
        if not CAMS[0] <= cam <= CAMS[1]:
            raise DatasetError(
                NAME,
                f"{list_path} line {number}: no camera {CAMS[0]}..{CAMS[1]} in file name {name} "
                f"(expected names like {EXAMPLE})",
                LAYOUT,
            )
        path = f"{base_text}/{rel}"
        try:
            st = os.stat(path)
        except OSError:
            missing.append(path)
            continue
        files.append(File(path, st.st_size, st.st_mtime_ns))
        samples.append(Sample(path, pid, cam - 1))
    if missing:
        raise DatasetError(
            NAME,
            f"{len(missing):,} of {total:,} images listed in {list_path} are missing (first: {missing[0]})",
            LAYOUT,
        )
    if not samples:
        raise DatasetError(NAME, f"{list_path} lists no image", LAYOUT)
    return samples


SPEC = DatasetSpec(
    name=NAME,
    description="MSMT17 (V1 or V2): 4,101 ids, 15 cameras, 126,441 boxes; splits from its list files",
    load=load,
    defaults=DEFAULTS,
    layout=LAYOUT,
    embedded=False,
    default=False,
    input_size=(256, 128),
    version=VERSION,
)
